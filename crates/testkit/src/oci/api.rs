//! Request handling for [`super::FakeOci`]: authentication, faults, routes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use plexus_oci::model::{
    AttachVnicDetails, AttachmentState, Instance, LaunchOptions, NetworkType,
    UpdateInstanceDetails, Vnic, VnicAttachment, VnicState, API_PREFIX,
};
use plexus_oci::sign::{self, Received, Scope};
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use x509_cert::der::{DecodePem, Encode};

use super::{lock, AttachmentState as Att, InstanceSeed, InstanceState, OciRequest, Shared, State};

type Answer = (u16, Value, Vec<(&'static str, String)>);

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    plexus_cni::timefmt::rfc3339(secs)
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        json!({"code": code, "message": message}),
        Vec::new(),
    )
}

fn not_found() -> Answer {
    error(
        404,
        "NotAuthorizedOrNotFound",
        "Authorization failed or requested resource not found.",
    )
}

fn injected(status: u16) -> Answer {
    match status {
        409 => error(
            409,
            "IncorrectState",
            "The resource is in a conflicting state (injected).",
        ),
        429 => error(429, "TooManyRequests", "Too many requests for the tenancy."),
        503 => error(
            503,
            "ServiceUnavailable",
            "The service is currently unavailable.",
        ),
        504 => error(
            504,
            "GatewayTimeout",
            "The gateway timed out waiting for the service.",
        ),
        s if s >= 500 => error(s, "InternalServerError", "Internal error occurred."),
        s => error(s, "InjectedFault", "Injected fault."),
    }
}

pub(super) fn add_instance(s: &mut State, seed: InstanceSeed) {
    s.counter += 1;
    let vnic = Vnic {
        id: format!("ocid1.vnic.oc1.phx.primary{:06}", s.counter),
        compartment_id: seed.compartment_id.clone(),
        availability_domain: seed.availability_domain.clone(),
        lifecycle_state: VnicState::Available,
        display_name: Some("primary".into()),
        is_primary: true,
        mac_address: Some(seed.primary_mac.clone()),
        private_ip: Some(seed.primary_ip.clone()),
        subnet_id: seed.primary_subnet.clone(),
        nsg_ids: Vec::new(),
        freeform_tags: BTreeMap::new(),
        skip_source_dest_check: false,
        time_created: now_rfc3339(),
    };
    let attachment = VnicAttachment {
        id: format!("ocid1.vnicattachment.oc1.phx.fake{:06}", s.counter),
        instance_id: seed.id.clone(),
        compartment_id: seed.compartment_id.clone(),
        availability_domain: seed.availability_domain.clone(),
        lifecycle_state: AttachmentState::Attached,
        display_name: Some("primary".into()),
        vnic_id: Some(vnic.id.clone()),
        subnet_id: Some(seed.primary_subnet.clone()),
        nic_index: None,
        vlan_tag: Some(0),
        time_created: vnic.time_created.clone(),
    };
    s.primaries.insert(seed.id.clone(), vnic.clone());
    s.attachments.insert(
        attachment.id.clone(),
        Att {
            attachment,
            settle_at: Instant::now(),
            vnic,
        },
    );
    s.instances.insert(
        seed.id.clone(),
        InstanceState {
            network_type: seed.network_type,
            seed,
            lifecycle: "RUNNING".into(),
            running_at: None,
            next_mac: 0,
            reboots: 0,
        },
    );
}

/// Advances lifecycle states whose delay has passed.
pub(super) fn settle(s: &mut State) {
    let now = Instant::now();
    let stuck = s.stuck_attaching;
    for a in s.attachments.values_mut() {
        if now < a.settle_at {
            continue;
        }
        match a.attachment.lifecycle_state {
            AttachmentState::Attaching if !stuck => {
                a.attachment.lifecycle_state = AttachmentState::Attached;
                a.attachment.vnic_id = Some(a.vnic.id.clone());
                a.vnic.lifecycle_state = VnicState::Available;
            }
            AttachmentState::Detaching => {
                a.attachment.lifecycle_state = AttachmentState::Detached;
                a.vnic.lifecycle_state = VnicState::Terminated;
            }
            _ => {}
        }
    }
    for i in s.instances.values_mut() {
        if i.running_at.is_some_and(|t| now >= t) {
            i.running_at = None;
            i.lifecycle = "RUNNING".into();
        }
    }
}

/// `/opc/v2/vnics/` as IMDS shows it: primary first, then attached
/// secondaries in creation order, MACs upper-case.
pub(super) fn imds_vnics(s: &State, instance_id: &str) -> Value {
    let mut out = Vec::new();
    let mut push = |v: &Vnic| {
        let Some((subnet, _)) = s.subnets.get(&v.subnet_id) else {
            return;
        };
        out.push(json!({
            "vnicId": v.id,
            "privateIp": v.private_ip,
            "vlanTag": 0,
            "macAddr": v.mac_address.as_deref().unwrap_or("").to_ascii_uppercase(),
            "virtualRouterIp": subnet.gateway,
            "subnetCidrBlock": subnet.cidr,
        }));
    };
    if let Some(p) = s.primaries.get(instance_id) {
        push(p);
    }
    for a in s.attachments.values() {
        let att = &a.attachment;
        if att.instance_id == instance_id
            && !a.vnic.is_primary
            && att.lifecycle_state == AttachmentState::Attached
        {
            push(&a.vnic);
        }
    }
    Value::Array(out)
}

fn principal_key(
    s: &State,
    key_id: &str,
    path: &str,
    body: &[u8],
) -> Result<(RsaPublicKey, &'static str), Answer> {
    let unauth = || {
        error(
            401,
            "NotAuthenticated",
            "The required information to complete authentication was not provided or was incorrect.",
        )
    };
    if let Some(token) = key_id.strip_prefix("ST$") {
        return s
            .sessions
            .get(token)
            .cloned()
            .map(|k| (k, "session"))
            .ok_or_else(unauth);
    }
    if path == "/v1/x509" {
        let (tenancy, fp) = key_id.split_once("/fed-x509-sha256/").ok_or_else(unauth)?;
        let req: Value = serde_json::from_slice(body).map_err(|_| unauth())?;
        let cert_b64 = req["certificate"].as_str().ok_or_else(unauth)?;
        let pem = pem_wrap("CERTIFICATE", cert_b64);
        let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|_| unauth())?;
        let der = cert.to_der().map_err(|_| unauth())?;
        let leaf = plexus_oci::auth::leaf_facts(&pem).map_err(|_| unauth())?;
        if leaf.tenancy != tenancy
            || plexus_oci::keys::colon_hex(&Sha256::digest(&der)) != fp
            || !s.trusted_tenancies.iter().any(|t| t == tenancy)
            || req["intermediateCertificates"]
                .as_array()
                .is_none_or(Vec::is_empty)
        {
            return Err(unauth());
        }
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|_| unauth())?;
        let key = RsaPublicKey::from_public_key_der(&spki).map_err(|_| unauth())?;
        return Ok((key, "federation"));
    }
    s.api_keys
        .get(key_id)
        .cloned()
        .map(|k| (k, "api-key"))
        .ok_or_else(unauth)
}

fn authenticate(
    s: &State,
    method: &Method,
    target: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, Answer> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let unauth = |why: String| {
        error(
            401,
            "NotAuthenticated",
            &format!("The required information to complete authentication was not provided or was incorrect: {why}"),
        )
    };
    let auth = header("authorization").ok_or_else(|| unauth("no Authorization header".into()))?;
    let parsed = sign::parse_authorization(&auth).map_err(|e| unauth(e.to_string()))?;
    let (key, principal) = principal_key(s, &parsed.key_id, path, body)?;
    let scope = if path == "/v1/x509" {
        Scope::Federation
    } else {
        Scope::Api
    };
    let rx = Received {
        method: method.as_str(),
        target,
        body,
        scope,
        now: server_now(s),
    };
    sign::verify(&parsed, &rx, &header, &key).map_err(|e| unauth(e.to_string()))?;
    Ok(principal)
}

fn server_now(s: &State) -> SystemTime {
    let off = Duration::from_secs(s.clock_offset_secs.unsigned_abs());
    if s.clock_offset_secs >= 0 {
        SystemTime::now() + off
    } else {
        SystemTime::now() - off
    }
}

pub(super) async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let retry_token = headers
        .get("opc-retry-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = lock(&shared);
    s.counter += 1;
    let request_id = format!("fake/{:016X}", s.counter);
    let (principal, answer) = route(
        &mut s,
        &method,
        &uri,
        &target,
        &headers,
        &body,
        retry_token.as_deref(),
    );
    s.log.push(OciRequest {
        method: method.to_string(),
        target,
        retry_token,
        principal: principal.to_owned(),
        status: answer.0,
    });
    let date = sign::http_date(server_now(&s));
    drop(s);
    let (status, json, extra) = answer;
    let mut resp = Response::new(if status == 204 {
        Body::empty()
    } else {
        Body::from(json.to_string())
    });
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in std::iter::once(("opc-request-id", request_id))
        .chain(std::iter::once(("date", date)))
        .chain(extra)
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

fn route(
    s: &mut State,
    method: &Method,
    uri: &Uri,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
    retry_token: Option<&str>,
) -> (&'static str, Answer) {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/_fake/imds/") {
        // Unsigned test hook for the fake-imds binary.
        settle(s);
        let id = rest.trim_end_matches("/vnics");
        return ("unsigned", (200, imds_vnics(s, id), Vec::new()));
    }
    let principal = match authenticate(s, method, target, path, headers, body) {
        Ok(p) => p,
        Err(a) => return ("unsigned", a),
    };
    if path == "/v1/x509" && method == Method::POST {
        return (principal, federate(s, body));
    }
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return (principal, not_found());
    };
    let m = method.as_str();
    let mut lost = None;
    if let Some(f) = s.faults.iter_mut().find(|f| {
        f.remaining > 0 && (f.method == "*" || f.method == m) && rest.starts_with(&f.path_prefix)
    }) {
        f.remaining -= 1;
        if !f.after {
            let status = f.status;
            return (principal, injected(status));
        }
        lost = Some(f.status);
    }
    let answer = serve(
        s,
        method,
        rest,
        uri.query().unwrap_or(""),
        body,
        retry_token,
    );
    match lost {
        Some(status) => (principal, injected(status)),
        None => (principal, answer),
    }
}

/// Carries out an authenticated API request (retry tokens honoured).
fn serve(
    s: &mut State,
    method: &Method,
    rest: &str,
    query: &str,
    body: &[u8],
    retry_token: Option<&str>,
) -> Answer {
    settle(s);
    if let Some(token) = retry_token {
        let digest = format!("{} {rest} {:x}", method.as_str(), Sha256::digest(body));
        if let Some((seen, status, answer)) = s.retry_tokens.get(token) {
            if *seen == digest {
                return (*status, answer.clone(), Vec::new());
            }
            return error(
                409,
                "InvalidatedRetryToken",
                "The retry token was used with a different request.",
            );
        }
        let answer = dispatch(s, method, rest, query, body);
        if answer.0 < 300 {
            s.retry_tokens
                .insert(token.to_owned(), (digest, answer.0, answer.1.clone()));
        }
        return answer;
    }
    dispatch(s, method, rest, query, body)
}

/// Re-wraps a bare base64 body (as the federation request carries it) into
/// PEM with 64-column lines.
fn pem_wrap(label: &str, b64: &str) -> String {
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn federate(s: &mut State, body: &[u8]) -> Answer {
    let req: Value = serde_json::from_slice(body).unwrap_or_default();
    let Some(pk) = req["publicKey"].as_str() else {
        return error(400, "InvalidParameter", "publicKey is required");
    };
    let pem = pem_wrap("PUBLIC KEY", pk);
    let Ok(key) = RsaPublicKey::from_public_key_pem(&pem) else {
        return error(400, "InvalidParameter", "publicKey is not an RSA SPKI key");
    };
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = server_now(s) + s.token_ttl;
    let exp = exp
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    s.counter += 1;
    let claims = json!({"sub": "ocid1.instance.oc1.phx.fake", "exp": exp, "jti": s.counter, "ptype": "instance"});
    let token = format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"RS256","kid":"fake"}"#),
        b64.encode(claims.to_string()),
        b64.encode(format!("sig{}", s.counter))
    );
    s.sessions.insert(token.clone(), key);
    (200, json!({"token": token}), Vec::new())
}

fn query_map(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn dispatch(s: &mut State, method: &Method, rest: &str, query: &str, body: &[u8]) -> Answer {
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["instances", id]) => match s.instances.get(*id) {
            Some(i) => (200, instance_json(i), Vec::new()),
            None => not_found(),
        },
        ("PUT", ["instances", id]) => update_instance(s, id, body),
        ("GET", ["vnicAttachments"]) => list_attachments(s, &query_map(query)),
        ("POST", ["vnicAttachments"]) => attach(s, body),
        ("GET", ["vnicAttachments", id]) => match s.attachments.get(*id) {
            Some(a) => (200, to_json(&a.attachment), Vec::new()),
            None => not_found(),
        },
        ("DELETE", ["vnicAttachments", id]) => detach(s, id),
        ("GET", ["vnics", id]) => {
            let found = s
                .attachments
                .values()
                .map(|a| &a.vnic)
                .find(|v| v.id == *id && v.lifecycle_state != VnicState::Provisioning);
            match found {
                Some(v) => (200, to_json(v), Vec::new()),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn instance_json(i: &InstanceState) -> Value {
    to_json(&Instance {
        id: i.seed.id.clone(),
        compartment_id: i.seed.compartment_id.clone(),
        availability_domain: i.seed.availability_domain.clone(),
        lifecycle_state: i.lifecycle.clone(),
        display_name: Some(i.seed.id.clone()),
        shape: "VM.Standard.E4.Flex".into(),
        launch_options: Some(LaunchOptions {
            network_type: Some(i.network_type),
        }),
        time_created: "2026-01-01T00:00:00.000Z".into(),
    })
}

fn list_attachments(s: &State, q: &BTreeMap<String, String>) -> Answer {
    let Some(compartment) = q.get("compartmentId") else {
        return error(400, "MissingParameter", "Missing compartmentId");
    };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let offset: usize = match q.get("page") {
        Some(p) => match p.strip_prefix("fakepage-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return error(400, "InvalidParameter", "Invalid page token"),
        },
        None => 0,
    };
    let all: Vec<&VnicAttachment> = s
        .attachments
        .values()
        .map(|a| &a.attachment)
        .filter(|a| &a.compartment_id == compartment)
        .filter(|a| q.get("instanceId").is_none_or(|i| &a.instance_id == i))
        .collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| to_json(*a))
        .collect();
    let mut headers = Vec::new();
    if offset + limit < all.len() {
        headers.push(("opc-next-page", format!("fakepage-{}", offset + limit)));
    }
    (200, Value::Array(page), headers)
}

fn attach(s: &mut State, body: &[u8]) -> Answer {
    let details: AttachVnicDetails = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                400,
                "InvalidParameter",
                &format!("Invalid AttachVnicDetails: {e}"),
            )
        }
    };
    let Some(inst) = s.instances.get(&details.instance_id) else {
        return not_found();
    };
    if inst.lifecycle != "RUNNING" {
        return error(409, "IncorrectState", "The instance is not running.");
    }
    let subnet_id = details.create_vnic_details.subnet_id.clone();
    let Some((subnet, used)) = s.subnets.get(&subnet_id).cloned() else {
        return not_found();
    };
    let Some(mac) = inst.seed.macs.get(inst.next_mac).cloned() else {
        return error(
            400,
            "LimitExceeded",
            "The instance has reached its VNIC attachment limit.",
        );
    };
    let (compartment, ad) = (
        inst.seed.compartment_id.clone(),
        inst.seed.availability_domain.clone(),
    );
    s.counter += 1;
    let n = s.counter;
    let ip = std::net::Ipv4Addr::from(u32::from(subnet.first_host) + used);
    if let Some(e) = s.subnets.get_mut(&subnet_id) {
        e.1 += 1;
    }
    if let Some(i) = s.instances.get_mut(&details.instance_id) {
        i.next_mac += 1;
    }
    let c = &details.create_vnic_details;
    let vnic = Vnic {
        id: format!("ocid1.vnic.oc1.phx.fake{n:06}"),
        compartment_id: compartment.clone(),
        availability_domain: ad.clone(),
        lifecycle_state: VnicState::Provisioning,
        display_name: c.display_name.clone(),
        is_primary: false,
        mac_address: Some(mac),
        private_ip: Some(ip.to_string()),
        subnet_id: subnet_id.clone(),
        nsg_ids: c.nsg_ids.clone(),
        freeform_tags: c.freeform_tags.clone(),
        skip_source_dest_check: c.skip_source_dest_check.unwrap_or(false),
        time_created: now_rfc3339(),
    };
    let attachment = VnicAttachment {
        id: format!("ocid1.vnicattachment.oc1.phx.fake{n:06}"),
        instance_id: details.instance_id.clone(),
        compartment_id: compartment,
        availability_domain: ad,
        lifecycle_state: AttachmentState::Attaching,
        display_name: details.display_name.clone(),
        vnic_id: None,
        subnet_id: Some(subnet_id),
        nic_index: None,
        vlan_tag: None,
        time_created: vnic.time_created.clone(),
    };
    let answer = to_json(&attachment);
    let settle_at = Instant::now() + s.attach_delay;
    s.attachments.insert(
        attachment.id.clone(),
        Att {
            attachment,
            settle_at,
            vnic,
        },
    );
    (200, answer, Vec::new())
}

fn detach(s: &mut State, id: &str) -> Answer {
    let delay = s.detach_delay;
    let Some(a) = s.attachments.get_mut(id) else {
        return not_found();
    };
    if a.vnic.is_primary {
        return error(
            409,
            "IncorrectState",
            "The primary VNIC cannot be detached.",
        );
    }
    if a.attachment.lifecycle_state != AttachmentState::Attached {
        return error(
            409,
            "IncorrectState",
            "The VNIC attachment is not ATTACHED.",
        );
    }
    a.attachment.lifecycle_state = AttachmentState::Detaching;
    a.vnic.lifecycle_state = VnicState::Terminating;
    a.settle_at = Instant::now() + delay;
    (204, Value::Null, Vec::new())
}

fn update_instance(s: &mut State, id: &str, body: &[u8]) -> Answer {
    let details: UpdateInstanceDetails = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                400,
                "InvalidParameter",
                &format!("Invalid UpdateInstanceDetails: {e}"),
            )
        }
    };
    let busy = s.attachments.values().any(|a| {
        a.attachment.instance_id == id
            && !a.vnic.is_primary
            && a.attachment.lifecycle_state != AttachmentState::Detached
    });
    let reboot = s.reboot_delay;
    let Some(inst) = s.instances.get_mut(id) else {
        return not_found();
    };
    let want = details.launch_options.network_type;
    if want != inst.network_type {
        if busy {
            return error(
                409,
                "IncorrectState",
                "Detach all VNICs except the primary VNIC before changing the network type.",
            );
        }
        if want == NetworkType::E1000 {
            return error(
                400,
                "InvalidParameter",
                "E1000 is not supported on this shape.",
            );
        }
        inst.network_type = want;
        inst.lifecycle = "STOPPING".into();
        inst.running_at = Some(Instant::now() + reboot);
        inst.reboots += 1;
    }
    let work = format!("ocid1.coreservicesworkrequest.oc1.phx.fake{}", inst.reboots);
    (
        200,
        instance_json(inst),
        vec![("opc-work-request-id", work)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%20c"), "a:b c");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%"), "bad%");
    }
}
