//! Protobuf request bodies, turned into JSON before the verbs see them.
//! Just enough of the protobuf wire format and the Kubernetes messages
//! (`runtime.Unknown`, `ObjectMeta`, `Pod.metadata`, core/v1 `Event`).

use plexus_cni::timefmt::rfc3339;
use serde_json::{json, Map, Value};

use super::resource::Target;
use super::state::State;
pub(super) const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

pub(super) fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == PROTOBUF
}

/// Client-go clients configured for protobuf (Multus is) send pod status
/// updates and events in the Kubernetes protobuf envelope. Events are decoded
/// fully; for pods only `metadata` is, and `spec`/`status` are carried over
/// from the stored object (Multus only changes annotations).
pub(super) fn protobuf_body_to_json(
    s: &State,
    target: &Target<'_>,
    body: &[u8],
) -> Result<Value, String> {
    let (res, existing) = match target {
        Target::Collection { res, .. } => (*res, None),
        Target::Item { res, ns, name, .. } => (*res, s.objects.get(&res.item_path(ns, name))),
    };
    let (api_version, kind, raw) = decode_unknown(body)?;
    if !kind.is_empty() && kind != res.kind {
        return Err(format!("kind {kind:?} does not match {}", res.kind));
    }
    let mut obj = match res.kind {
        "Pod" => decode_pod(raw)?,
        "Event" if res.group.is_empty() => decode_event(raw)?,
        _ => return Err(format!("protobuf is not supported for {}", res.qualified())),
    };
    obj.insert(
        "apiVersion".into(),
        if api_version.is_empty() {
            res.api_version()
        } else {
            api_version
        }
        .into(),
    );
    obj.insert("kind".into(), res.kind.into());
    if let Some(old) = existing {
        for key in ["spec", "status"] {
            if let Some(v) = old.get(key) {
                obj.insert(key.into(), v.clone());
            }
        }
    }
    Ok(Value::Object(obj))
}

/// `k8s\0`, the prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("varint too long".into())
}

/// Every (field number, value) of one message, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut buf)?),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|e| e.to_string())?;
                if len > buf.len() {
                    return Err("truncated length-delimited field".into());
                }
                let (bytes, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(bytes)
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if n > buf.len() {
                    return Err("truncated fixed field".into());
                }
                buf = &buf[n..];
                Field::Fixed
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((key >> 3, field));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

/// `runtime.Unknown`: (apiVersion, kind, raw object bytes).
fn decode_unknown(body: &[u8]) -> Result<(String, String, &[u8]), String> {
    let inner = body
        .strip_prefix(MAGIC)
        .ok_or("missing k8s protobuf magic")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (no, f) in fields(inner)? {
        match (no, f) {
            (1, Field::Bytes(tm)) => {
                for (no, f) in fields(tm)? {
                    match (no, f) {
                        (1, Field::Bytes(b)) => api_version = text(b)?,
                        (2, Field::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    Ok((api_version, kind, raw))
}

/// `metav1.Time`/`MicroTime` {seconds, nanos} as RFC 3339.
fn time(b: &[u8], micro: bool) -> Result<Value, String> {
    let (mut secs, mut nanos) = (0u64, 0u64);
    for (no, f) in fields(b)? {
        match (no, f) {
            (1, Field::Varint(v)) => secs = v,
            (2, Field::Varint(v)) => nanos = v,
            _ => {}
        }
    }
    let base = rfc3339(secs);
    Ok(if micro {
        format!("{}.{:06}Z", base.trim_end_matches('Z'), nanos / 1000).into()
    } else {
        base.into()
    })
}

fn string_map(entries: &[&[u8]]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for e in entries {
        let (mut k, mut v) = (String::new(), String::new());
        for (no, f) in fields(e)? {
            match (no, f) {
                (1, Field::Bytes(b)) => k = text(b)?,
                (2, Field::Bytes(b)) => v = text(b)?,
                _ => {}
            }
        }
        m.insert(k, v.into());
    }
    Ok(m)
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Vec::new(), Vec::new(), Vec::new());
    for (no, f) in fields(b)? {
        let key = match no {
            1 => "name",
            2 => "generateName",
            3 => "namespace",
            5 => "uid",
            6 => "resourceVersion",
            _ => "",
        };
        match (no, f) {
            (_, Field::Bytes(v)) if !key.is_empty() => {
                m.insert(key.into(), text(v)?.into());
            }
            (7, Field::Varint(v)) => {
                m.insert("generation".into(), v.into());
            }
            (8, Field::Bytes(v)) => {
                m.insert("creationTimestamp".into(), time(v, false)?);
            }
            (11, Field::Bytes(v)) => labels.push(v),
            (12, Field::Bytes(v)) => annotations.push(v),
            (14, Field::Bytes(v)) => finalizers.push(Value::from(text(v)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(string_map(&labels)?));
    }
    if !annotations.is_empty() {
        m.insert(
            "annotations".into(),
            Value::Object(string_map(&annotations)?),
        );
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// A Pod's `metadata` (spec and status are not decoded).
fn decode_pod(raw: &[u8]) -> Result<Map<String, Value>, String> {
    let mut obj = Map::new();
    for (no, f) in fields(raw)? {
        if let (1, Field::Bytes(b)) = (no, f) {
            obj.insert("metadata".into(), object_meta(b)?);
        }
    }
    Ok(obj)
}

fn strings(b: &[u8], names: &[(u64, &str)]) -> Result<Value, String> {
    let mut m = Map::new();
    for (no, f) in fields(b)? {
        if let (Some((_, name)), Field::Bytes(v)) = (names.iter().find(|(n, _)| *n == no), f) {
            m.insert((*name).into(), text(v)?.into());
        }
    }
    Ok(Value::Object(m))
}

const OBJECT_REFERENCE: &[(u64, &str)] = &[
    (1, "kind"),
    (2, "namespace"),
    (3, "name"),
    (4, "uid"),
    (5, "apiVersion"),
    (6, "resourceVersion"),
    (7, "fieldPath"),
];

/// A core/v1 Event.
fn decode_event(raw: &[u8]) -> Result<Map<String, Value>, String> {
    let mut obj = Map::new();
    obj.insert("eventTime".into(), Value::Null);
    for (no, f) in fields(raw)? {
        match (no, f) {
            (1, Field::Bytes(b)) => {
                obj.insert("metadata".into(), object_meta(b)?);
            }
            (2, Field::Bytes(b)) => {
                obj.insert("involvedObject".into(), strings(b, OBJECT_REFERENCE)?);
            }
            (3, Field::Bytes(b)) => {
                obj.insert("reason".into(), text(b)?.into());
            }
            (4, Field::Bytes(b)) => {
                obj.insert("message".into(), text(b)?.into());
            }
            (5, Field::Bytes(b)) => {
                obj.insert(
                    "source".into(),
                    strings(b, &[(1, "component"), (2, "host")])?,
                );
            }
            (6, Field::Bytes(b)) => {
                obj.insert("firstTimestamp".into(), time(b, false)?);
            }
            (7, Field::Bytes(b)) => {
                obj.insert("lastTimestamp".into(), time(b, false)?);
            }
            (8, Field::Varint(v)) => {
                obj.insert("count".into(), json!(v));
            }
            (9, Field::Bytes(b)) => {
                obj.insert("type".into(), text(b)?.into());
            }
            (10, Field::Bytes(b)) if !b.is_empty() => {
                obj.insert("eventTime".into(), time(b, true)?);
            }
            (12, Field::Bytes(b)) => {
                obj.insert("action".into(), text(b)?.into());
            }
            (13, Field::Bytes(b)) => {
                obj.insert("related".into(), strings(b, OBJECT_REFERENCE)?);
            }
            (14, Field::Bytes(b)) => {
                obj.insert("reportingComponent".into(), text(b)?.into());
            }
            (15, Field::Bytes(b)) => {
                obj.insert("reportingInstance".into(), text(b)?.into());
            }
            _ => {}
        }
    }
    Ok(obj)
}
