//! A fake OCI Core Services API (`/20160918/…`) and identity federation
//! endpoint (`/v1/x509`) for the operator's tests and the demo.
//!
//! Faithful where the operator depends on it: every request's Signature
//! Version 1 is verified with the same scheme the client signs with (API
//! keys and `ST$` session tokens; 401 `NotAuthenticated` otherwise, including
//! a date off by more than 5 minutes); JSON in camelCase; an
//! `opc-request-id` on every answer; attachments go ATTACHING -> ATTACHED and
//! DETACHING -> DETACHED after configurable delays, with `vnicId` null until
//! attached; `opc-retry-token` replays the first answer (and 409s a reuse
//! with another body); lists page with `limit`/`page`/`opc-next-page`;
//! `UpdateInstance` refuses to change the network type while secondary VNICs
//! are attached and reboots the instance. Faults (409/429/5xx, a stuck
//! ATTACHING) are scripted. What the fake assumes beyond the docs is listed
//! in `docs/operator.md`.

mod api;
mod auth;
mod ops;

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::Router;
use plexus_oci::model::{NetworkType, Vnic, VnicAttachment};
use rsa::RsaPublicKey;
use serde_json::Value;

use crate::serve::ServerThread;

/// A scripted error answer for matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `GET`, `POST`, … or `*`.
    pub method: String,
    /// Path prefix after `/20160918`, e.g. `/vnicAttachments`.
    pub path_prefix: String,
    pub status: u16,
    pub remaining: usize,
    /// Process the request, then answer `status` instead (a response lost
    /// after the service acted, e.g. a gateway timeout).
    pub after: bool,
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub retry_token: Option<String>,
    /// `api-key`, `session`, `federation` or `unsigned`.
    pub principal: String,
    pub status: u16,
}

/// An instance the fake knows.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSeed {
    pub id: String,
    pub compartment_id: String,
    pub availability_domain: String,
    pub network_type: NetworkType,
    /// The primary VNIC's subnet, MAC and IP.
    pub primary_subnet: String,
    pub primary_mac: String,
    pub primary_ip: String,
    /// MACs handed to secondary VNICs in order (the "VFs" a test has
    /// already created in the node namespace).
    pub macs: Vec<String>,
}

/// A subnet: CIDR, gateway, and addresses handed out from `first_host`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSeed {
    pub id: String,
    pub cidr: String,
    pub gateway: String,
    pub first_host: std::net::Ipv4Addr,
}

#[derive(Debug)]
pub(crate) struct InstanceState {
    pub seed: InstanceSeed,
    pub network_type: NetworkType,
    pub lifecycle: String,
    /// Reboot completes at this instant (UpdateInstance).
    pub running_at: Option<Instant>,
    pub next_mac: usize,
    pub reboots: u32,
}

#[derive(Debug)]
pub(crate) struct AttachmentState {
    pub attachment: VnicAttachment,
    /// Becomes ATTACHED (or DETACHED) at this instant.
    pub settle_at: Instant,
    pub vnic: Vnic,
}

#[derive(Debug)]
pub(crate) struct State {
    pub instances: BTreeMap<String, InstanceState>,
    pub subnets: BTreeMap<String, (SubnetSeed, u32)>,
    pub attachments: BTreeMap<String, AttachmentState>,
    pub primaries: BTreeMap<String, Vnic>,
    pub retry_tokens: BTreeMap<String, (String, u16, Value)>,
    pub api_keys: BTreeMap<String, RsaPublicKey>,
    pub sessions: BTreeMap<String, RsaPublicKey>,
    pub trusted_tenancies: Vec<String>,
    pub faults: VecDeque<Fault>,
    pub log: Vec<OciRequest>,
    pub attach_delay: Duration,
    pub detach_delay: Duration,
    pub reboot_delay: Duration,
    pub stuck_attaching: bool,
    pub token_ttl: Duration,
    pub clock_offset_secs: i64,
    pub counter: u64,
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeOci {
    addr: SocketAddr,
    shared: Shared,
    _server: ServerThread,
}

impl FakeOci {
    /// Serves on `127.0.0.1:<free port>`.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with_listener(TcpListener::bind("127.0.0.1:0")?)
    }

    /// Serves on an already bound listener.
    pub fn start_with_listener(listener: TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared: Shared = Arc::new(Mutex::new(State {
            instances: BTreeMap::new(),
            subnets: BTreeMap::new(),
            attachments: BTreeMap::new(),
            primaries: BTreeMap::new(),
            retry_tokens: BTreeMap::new(),
            api_keys: BTreeMap::new(),
            sessions: BTreeMap::new(),
            trusted_tenancies: Vec::new(),
            faults: VecDeque::new(),
            log: Vec::new(),
            attach_delay: Duration::from_millis(200),
            detach_delay: Duration::from_millis(100),
            reboot_delay: Duration::from_millis(500),
            stuck_attaching: false,
            token_ttl: Duration::from_secs(1200),
            clock_offset_secs: 0,
            counter: 0,
        }));
        let app_state = shared.clone();
        let server = ServerThread::spawn(format!("fake-oci-{addr}"), listener, move |l| {
            let app = Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                api::handle(app_state.clone(), m, u, h, b)
            });
            axum::serve(l, app).tcp_nodelay(true)
        })?;
        Ok(Self {
            addr,
            shared,
            _server: server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL (both the Core Services and the auth endpoint).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Accepts requests signed by `key` under `key_id` (an API key).
    pub fn add_api_key(&self, key_id: &str, key: RsaPublicKey) {
        lock(&self.shared).api_keys.insert(key_id.to_owned(), key);
    }

    /// Federates leaf certificates of `tenancy`.
    pub fn trust_tenancy(&self, tenancy: &str) {
        lock(&self.shared)
            .trusted_tenancies
            .push(tenancy.to_owned());
    }

    pub fn add_subnet(&self, seed: SubnetSeed) {
        lock(&self.shared)
            .subnets
            .insert(seed.id.clone(), (seed, 0));
    }

    /// Adds a RUNNING instance with its primary VNIC attached.
    pub fn add_instance(&self, seed: InstanceSeed) {
        let mut s = lock(&self.shared);
        ops::add_instance(&mut s, seed);
    }

    /// Answers the next `count` requests matching `method` and
    /// `path_prefix` (after `/20160918`) with `status` and OCI's error body.
    pub fn inject(&self, method: &str, path_prefix: &str, status: u16, count: usize) {
        lock(&self.shared).faults.push_back(Fault {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            status,
            remaining: count,
            after: false,
        });
    }

    /// The next `count` matching requests are carried out, but the client
    /// gets a 504 instead of the answer (it must retry with the same
    /// `opc-retry-token`).
    pub fn inject_lost_response(&self, method: &str, path_prefix: &str, count: usize) {
        lock(&self.shared).faults.push_back(Fault {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            status: 504,
            remaining: count,
            after: true,
        });
    }

    /// Time from AttachVnic to ATTACHED and from DetachVnic to DETACHED.
    pub fn set_delays(&self, attach: Duration, detach: Duration, reboot: Duration) {
        let mut s = lock(&self.shared);
        s.attach_delay = attach;
        s.detach_delay = detach;
        s.reboot_delay = reboot;
    }

    /// Keeps new and pending attachments in ATTACHING until cleared.
    pub fn set_stuck_attaching(&self, stuck: bool) {
        let mut s = lock(&self.shared);
        s.stuck_attaching = stuck;
        if !stuck {
            let now = Instant::now();
            for a in s.attachments.values_mut() {
                a.settle_at = a.settle_at.max(now);
            }
        }
    }

    /// Lifetime of federated session tokens.
    pub fn set_token_ttl(&self, ttl: Duration) {
        lock(&self.shared).token_ttl = ttl;
    }

    /// Shifts the server's clock (for skew tests), in seconds.
    pub fn set_clock_offset(&self, secs: i64) {
        lock(&self.shared).clock_offset_secs = secs;
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<OciRequest> {
        lock(&self.shared).log.clone()
    }

    /// Attachments of `instance_id` (every state), settled to now.
    pub fn attachments(&self, instance_id: &str) -> Vec<VnicAttachment> {
        let mut s = lock(&self.shared);
        ops::settle(&mut s);
        s.attachments
            .values()
            .filter(|a| a.attachment.instance_id == instance_id)
            .map(|a| a.attachment.clone())
            .collect()
    }

    /// The instance's network type and lifecycle state.
    pub fn instance_state(&self, instance_id: &str) -> Option<(NetworkType, String, u32)> {
        let mut s = lock(&self.shared);
        ops::settle(&mut s);
        s.instances
            .get(instance_id)
            .map(|i| (i.network_type, i.lifecycle.clone(), i.reboots))
    }

    /// What IMDS `/opc/v2/vnics/` shows on `instance_id` right now.
    pub fn imds_vnics(&self, instance_id: &str) -> Value {
        imds_view(&self.shared, instance_id)
    }

    /// A closure for [`crate::imds::FakeImds::set_vnic_source`].
    pub fn imds_source(&self, instance_id: &str) -> impl Fn() -> Value + Send + Sync + 'static {
        let shared = self.shared.clone();
        let id = instance_id.to_owned();
        move || imds_view(&shared, &id)
    }
}

fn imds_view(shared: &Shared, instance_id: &str) -> Value {
    let mut s = lock(shared);
    ops::settle(&mut s);
    ops::imds_vnics(&s, instance_id)
}
