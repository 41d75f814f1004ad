//! The client and both credential kinds against the test kit's fake OCI API
//! and fake IMDS: signatures verified by the fake, federation, renewal,
//! certificate rotation, pagination, retries, idempotency, clock skew.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_oci::auth::{CredentialSource, InstancePrincipal, PrincipalConfig};
use plexus_oci::client::{Compute, OciClient, OciError, Policy};
use plexus_oci::config::ApiKeySource;
use plexus_oci::keys::{fingerprint, private_key_from_pem, public_key_from_pem};
use plexus_oci::model::{AttachVnicDetails, AttachmentState, CreateVnicDetails, NetworkType};
use plexus_testkit::imds::{FakeImds, IDENTITY_TENANCY};
use plexus_testkit::oci::{FakeOci, InstanceSeed, SubnetSeed};

const INSTANCE: &str = "ocid1.instance.oc1.phx.fakeinstance";
const COMPARTMENT: &str = "ocid1.compartment.oc1..fakecompartment";
const SUBNET: &str = "ocid1.subnet.oc1.phx.pods";

fn seed(fake: &FakeOci, macs: usize) {
    fake.add_subnet(SubnetSeed {
        id: SUBNET.into(),
        cidr: "198.51.100.0/24".into(),
        gateway: "198.51.100.1".into(),
        first_host: "198.51.100.10".parse().unwrap(),
    });
    fake.add_instance(InstanceSeed {
        id: INSTANCE.into(),
        compartment_id: COMPARTMENT.into(),
        availability_domain: "Uocm:PHX-AD-1".into(),
        network_type: NetworkType::Vfio,
        primary_subnet: SUBNET.into(),
        primary_mac: "02:00:17:00:00:01".into(),
        primary_ip: "198.51.100.2".into(),
        macs: (0..macs)
            .map(|i| format!("02:00:17:00:01:{i:02x}"))
            .collect(),
    });
}

fn fast() -> Policy {
    Policy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        min_interval: Duration::from_millis(1),
        page_limit: 2,
    }
}

/// An API-key source for the published test key, registered with the fake.
fn api_key(fake: &FakeOci, dir: &std::path::Path) -> Arc<ApiKeySource> {
    let pem = include_str!("fixtures/vector-key.pem");
    std::fs::write(dir.join("key.pem"), pem).unwrap();
    let key = private_key_from_pem(pem).unwrap();
    let fp = fingerprint(&key.to_public_key()).unwrap();
    let config = format!(
        "[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint={fp}\nkey_file=key.pem\ntenancy=ocid1.tenancy.oc1..t\nregion=us-phoenix-1\n"
    );
    std::fs::write(dir.join("config"), config).unwrap();
    let src = ApiKeySource::from_file(&dir.join("config"), "DEFAULT", dir).unwrap();
    let public = public_key_from_pem(include_str!("fixtures/vector-key.pub.pem")).unwrap();
    fake.add_api_key(&src.credentials().unwrap().key_id, public);
    Arc::new(src)
}

fn details(name: &str) -> AttachVnicDetails {
    AttachVnicDetails {
        create_vnic_details: CreateVnicDetails {
            subnet_id: SUBNET.into(),
            display_name: Some(name.into()),
            nsg_ids: vec![],
            freeform_tags: BTreeMap::from([("plexus.io/pool".into(), "p".into())]),
            assign_public_ip: false,
            skip_source_dest_check: None,
        },
        instance_id: INSTANCE.into(),
        display_name: Some(name.into()),
    }
}

#[test]
fn instance_principal_federates_renews_and_follows_rotation() {
    let imds = FakeImds::start(serde_json::json!([])).unwrap();
    let fake = FakeOci::start().unwrap();
    seed(&fake, 0);
    fake.trust_tenancy(IDENTITY_TENANCY);
    fake.set_token_ttl(Duration::from_secs(3));
    let principal = Arc::new(InstancePrincipal::new(PrincipalConfig {
        imds_base: imds.url(),
        auth_base: Some(fake.url()),
        refresh_before: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
    }));
    assert_eq!(principal.region().unwrap(), "us-phoenix-1");
    let client = OciClient::new(&fake.url(), principal.clone(), fast());
    let inst = client.get_instance(INSTANCE).unwrap();
    assert_eq!(
        inst.launch_options.unwrap().network_type,
        Some(NetworkType::Vfio)
    );
    let creds = principal.credentials().unwrap();
    assert!(creds.key_id.starts_with("ST$"));
    assert!(
        !format!("{creds:?}").contains(&creds.key_id[3..20]),
        "token leaked in Debug"
    );
    let first_cert = principal.current_certificate().unwrap();

    // The token is within refresh_before of exp after ~1 s: renewed, and the
    // renewal picks up the rotated certificate.
    imds.rotate_identity();
    std::thread::sleep(Duration::from_millis(1200));
    client.get_instance(INSTANCE).unwrap();
    assert_ne!(principal.current_certificate().unwrap(), first_cert);
    let log = fake.requests();
    let feds = log.iter().filter(|r| r.principal == "federation").count();
    assert_eq!(feds, 2, "{log:#?}");
    assert!(log
        .iter()
        .filter(|r| r.target.starts_with("/2016"))
        .all(|r| r.principal == "session"));
    let paths: Vec<_> = imds.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&"/opc/v2/identity/intermediate.pem".to_string()));

    // An untrusted tenancy gets NotAuthenticated from federation.
    let other = FakeOci::start().unwrap();
    let p2 = InstancePrincipal::new(PrincipalConfig {
        imds_base: imds.url(),
        auth_base: Some(other.url()),
        ..PrincipalConfig::default()
    });
    let err = p2.credentials().unwrap_err();
    assert!(
        matches!(err, plexus_oci::AuthError::Federation { status: 401, .. }),
        "{err}"
    );
}

#[test]
fn api_key_pagination_retries_and_retry_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeOci::start().unwrap();
    seed(&fake, 8);
    fake.set_delays(
        Duration::from_millis(50),
        Duration::from_millis(20),
        Duration::ZERO,
    );
    let client = OciClient::new(&fake.url(), api_key(&fake, tmp.path()), fast());

    // Same retry token twice (a lost response, a restarted caller): one VNIC.
    let a = client.attach_vnic(&details("plexus-0"), "tok-0").unwrap();
    assert_eq!(a.lifecycle_state, AttachmentState::Attaching);
    assert_eq!(a.vnic_id, None);
    let again = client.attach_vnic(&details("plexus-0"), "tok-0").unwrap();
    assert_eq!(again.id, a.id);
    let reused = client
        .attach_vnic(&details("plexus-9"), "tok-0")
        .unwrap_err();
    assert_eq!(reused.code(), "InvalidatedRetryToken");

    // A 429 storm and a 500 are retried; the caller sees success.
    fake.inject("POST", "/vnicAttachments", 429, 3);
    fake.inject("POST", "/vnicAttachments", 500, 1);
    for i in 1..4 {
        client
            .attach_vnic(&details(&format!("plexus-{i}")), &format!("tok-{i}"))
            .unwrap();
    }
    // Pages of 2: primary + 4 secondaries = 3 pages.
    let all = client.list_vnic_attachments(COMPARTMENT, INSTANCE).unwrap();
    assert_eq!(all.len(), 5);
    let pages = fake
        .requests()
        .iter()
        .filter(|r| r.target.contains("page="))
        .count();
    assert_eq!(pages, 2);

    std::thread::sleep(Duration::from_millis(80));
    let done = client.get_vnic_attachment(&a.id).unwrap();
    assert_eq!(done.lifecycle_state, AttachmentState::Attached);
    let vnic = client.get_vnic(done.vnic_id.as_deref().unwrap()).unwrap();
    assert_eq!(vnic.freeform_tags["plexus.io/pool"], "p");
    assert!(!vnic.is_primary);

    // A storm longer than the retry budget surfaces the API's code.
    fake.inject("GET", "/instances", 429, 5);
    let err = client.get_instance(INSTANCE).unwrap_err();
    assert_eq!((err.code(), err.status()), ("TooManyRequests", Some(429)));
    let err = client
        .get_instance("ocid1.instance.oc1.phx.nope")
        .unwrap_err();
    assert_eq!(err.code(), "NotAuthorizedOrNotFound");
}

#[test]
fn wrong_key_and_clock_skew_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeOci::start().unwrap();
    seed(&fake, 1);
    let src = api_key(&fake, tmp.path());
    let unknown = FakeOci::start().unwrap();
    seed(&unknown, 1);
    let err = OciClient::new(&unknown.url(), src.clone(), fast())
        .get_instance(INSTANCE)
        .unwrap_err();
    assert_eq!((err.code(), err.status()), ("NotAuthenticated", Some(401)));

    // The server's clock is 10 minutes ahead: the fake rejects the date, and
    // the client reports the skew instead of a bare 401, then refuses to
    // send at all.
    fake.set_clock_offset(600);
    let client = OciClient::new(&fake.url(), src, fast());
    let err = client.get_instance(INSTANCE).unwrap_err();
    assert!(
        matches!(err, OciError::ClockSkew { skew_secs } if skew_secs >= 599),
        "{err}"
    );
    let before = fake.requests().len();
    assert!(matches!(
        client.get_instance(INSTANCE),
        Err(OciError::ClockSkew { .. })
    ));
    assert_eq!(
        fake.requests().len(),
        before,
        "a skewed client must not send"
    );
}
