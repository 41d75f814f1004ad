//! Oracle's published signing vectors, byte for byte (see fixtures/README.md).

#![allow(clippy::unwrap_used)]

use plexus_oci::keys::{fingerprint, private_key_from_pem, public_key_from_pem};
use plexus_oci::sign::{
    body_sha256, parse_authorization, sign, signing_string, verify, Body, Received, Request, Scope,
    SignError,
};

const KEY: &str = include_str!("fixtures/vector-key.pem");
const PUB: &str = include_str!("fixtures/vector-key.pub.pem");
const POST_BODY: &[u8] = include_bytes!("fixtures/vector-post-body.json");
const KEY_ID: &str = "ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq/ocid1.user.oc1..aaaaaaaat5nvwcna5j6aqzjcaty5eqbb6qt2jvpkanghtgdaqedqw3rynjq/20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34";
const DATE: &str = "Thu, 05 Jan 2014 21:31:40 GMT";
const HOST: &str = "iaas.us-phoenix-1.oraclecloud.com";
const GET_TARGET: &str = "/20160918/instances?availabilityDomain=Pjwf%3A%20PHX-AD-1&compartmentId=ocid1.compartment.oc1..aaaaaaaam3we6vgnherjq5q2idnccdflvjsnog7mlr6rtdb25gilchfeyjxa&displayName=TeamXInstances&volumeId=ocid1.volume.oc1.phx.abyhqljrgvttnlx73nmrwfaux7kcvzfs3s66izvxf2h4lgvyndsdsnoiwr5q";

const GET_SIGNING_STRING: &str = "date: Thu, 05 Jan 2014 21:31:40 GMT
(request-target): get /20160918/instances?availabilityDomain=Pjwf%3A%20PHX-AD-1&compartmentId=ocid1.compartment.oc1..aaaaaaaam3we6vgnherjq5q2idnccdflvjsnog7mlr6rtdb25gilchfeyjxa&displayName=TeamXInstances&volumeId=ocid1.volume.oc1.phx.abyhqljrgvttnlx73nmrwfaux7kcvzfs3s66izvxf2h4lgvyndsdsnoiwr5q
host: iaas.us-phoenix-1.oraclecloud.com";
const GET_AUTH: &str = r#"Signature version="1",headers="date (request-target) host",keyId="ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq/ocid1.user.oc1..aaaaaaaat5nvwcna5j6aqzjcaty5eqbb6qt2jvpkanghtgdaqedqw3rynjq/20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34",algorithm="rsa-sha256",signature="GBas7grhyrhSKHP6AVIj/h5/Vp8bd/peM79H9Wv8kjoaCivujVXlpbKLjMPeDUhxkFIWtTtLBj3sUzaFj34XE6YZAHc9r2DmE4pMwOAy/kiITcZxa1oHPOeRheC0jP2dqbTll8fmTZVwKZOKHYPtrLJIJQHJjNvxFWeHQjMaR7M=""#;

const POST_SIGNING_STRING: &str = "date: Thu, 05 Jan 2014 21:31:40 GMT
(request-target): post /20160918/volumeAttachments
host: iaas.us-phoenix-1.oraclecloud.com
content-length: 316
content-type: application/json
x-content-sha256: V9Z20UJTvkvpJ50flBzKE32+6m2zJjweHpDMX/U4Uy0=";
const POST_AUTH: &str = r#"Signature version="1",headers="date (request-target) host content-length content-type x-content-sha256",keyId="ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq/ocid1.user.oc1..aaaaaaaat5nvwcna5j6aqzjcaty5eqbb6qt2jvpkanghtgdaqedqw3rynjq/20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34",algorithm="rsa-sha256",signature="Mje8vIDPlwIHmD/cTDwRxE7HaAvBg16JnVcsuqaNRim23fFPgQfLoOOxae6WqKb1uPjYEl0qIdazWaBy/Ml8DRhqlocMwoSXv0fbukP8J5N80LCmzT/FFBvIvTB91XuXI3hYfP9Zt1l7S6ieVadHUfqBedWH0itrtPJBgKmrWso=""#;

fn lines(s: &plexus_oci::SignedHeaders, target: &str, method: &str) -> String {
    let mut out = vec![
        ("date", s.get("date").unwrap().to_owned()),
        ("(request-target)", format!("{method} {target}")),
        ("host", HOST.to_owned()),
    ];
    for h in ["content-length", "content-type", "x-content-sha256"] {
        if let Some(v) = s.get(h) {
            out.push((h, v.to_owned()));
        }
    }
    let refs: Vec<(&str, &str)> = out.iter().map(|(n, v)| (*n, v.as_str())).collect();
    signing_string(&refs)
}

#[test]
fn get_vector_matches_byte_for_byte() {
    let key = private_key_from_pem(KEY).unwrap();
    let req = Request {
        method: "GET",
        target: GET_TARGET,
        host: HOST,
        body: None,
        scope: Scope::Api,
    };
    let signed = sign(&req, DATE, KEY_ID, &key).unwrap();
    assert_eq!(lines(&signed, GET_TARGET, "get"), GET_SIGNING_STRING);
    assert_eq!(signed.get("authorization"), Some(GET_AUTH));
    assert_eq!(signed.get("x-content-sha256"), None);
    assert_eq!(signed.get("date"), Some(DATE));
}

#[test]
fn post_vector_matches_byte_for_byte() {
    assert_eq!(POST_BODY.len(), 316);
    let key = private_key_from_pem(KEY).unwrap();
    let req = Request {
        method: "POST",
        target: "/20160918/volumeAttachments",
        host: HOST,
        body: Some(Body {
            content_type: "application/json",
            bytes: POST_BODY,
        }),
        scope: Scope::Api,
    };
    let signed = sign(&req, DATE, KEY_ID, &key).unwrap();
    assert_eq!(
        lines(&signed, "/20160918/volumeAttachments", "post"),
        POST_SIGNING_STRING
    );
    assert_eq!(signed.get("authorization"), Some(POST_AUTH));
    assert_eq!(signed.get("content-length"), Some("316"));
}

#[test]
fn empty_post_still_carries_the_body_hash() {
    assert_eq!(
        body_sha256(b""),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
    let key = private_key_from_pem(KEY).unwrap();
    let req = Request {
        method: "POST",
        target: "/20160918/vnicAttachments",
        host: HOST,
        body: None,
        scope: Scope::Api,
    };
    let signed = sign(&req, DATE, KEY_ID, &key).unwrap();
    assert_eq!(
        signed.get("x-content-sha256"),
        Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
    );
    assert_eq!(signed.get("content-length"), Some("0"));
}

#[test]
fn federation_scope_leaves_host_out() {
    let key = private_key_from_pem(KEY).unwrap();
    let req = Request {
        method: "POST",
        target: "/v1/x509",
        host: "auth.us-phoenix-1.oraclecloud.com",
        body: Some(Body {
            content_type: "application/json",
            bytes: b"{}",
        }),
        scope: Scope::Federation,
    };
    let auth = sign(&req, DATE, "t/fed-x509-sha256/aa", &key).unwrap();
    let parsed = parse_authorization(auth.get("authorization").unwrap()).unwrap();
    assert_eq!(
        parsed.headers,
        [
            "date",
            "(request-target)",
            "content-length",
            "content-type",
            "x-content-sha256"
        ]
    );
}

fn header_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |n: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn verify_accepts_the_vectors_and_rejects_tampering() {
    let public = public_key_from_pem(PUB).unwrap();
    let at = httpdate::parse_http_date("Sun, 05 Jan 2014 21:33:00 GMT").unwrap();
    let sha = body_sha256(POST_BODY);
    let headers = [
        ("date", DATE),
        ("host", HOST),
        ("content-length", "316"),
        ("content-type", "application/json"),
        ("x-content-sha256", sha.as_str()),
    ];
    let lookup = header_of(&headers);
    let auth = parse_authorization(POST_AUTH).unwrap();
    assert_eq!(auth.key_id, KEY_ID);
    let mut rx = Received {
        method: "POST",
        target: "/20160918/volumeAttachments",
        body: POST_BODY,
        scope: Scope::Api,
        now: at,
    };
    verify(&auth, &rx, &lookup, &public).unwrap();
    rx.body = b"{}";
    assert_eq!(
        verify(&auth, &rx, &lookup, &public),
        Err(SignError::BodyHash)
    );
    rx.body = POST_BODY;
    rx.target = "/20160918/vnicAttachments";
    assert_eq!(
        verify(&auth, &rx, &lookup, &public),
        Err(SignError::BadSignature)
    );
    rx.target = "/20160918/volumeAttachments";
    rx.now = at + std::time::Duration::from_secs(400);
    assert!(matches!(
        verify(&auth, &rx, &lookup, &public),
        Err(SignError::ClockSkew { .. })
    ));
    // A POST signed with the GET header set is refused before any crypto.
    let get_auth = parse_authorization(GET_AUTH).unwrap();
    rx.now = at;
    assert_eq!(
        verify(&get_auth, &rx, &lookup, &public),
        Err(SignError::HeaderNotSigned("content-length"))
    );
}

#[test]
fn key_fingerprint_is_md5_of_spki() {
    let public = public_key_from_pem(PUB).unwrap();
    assert_eq!(
        fingerprint(&public).unwrap(),
        "73:61:a2:21:67:e0:df:be:7e:4b:93:1e:15:98:a5:b7"
    );
}
