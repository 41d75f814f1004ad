use super::*;
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Default)]
struct Recorder {
    calls: RefCell<Vec<(Command, String)>>,
    fail: Option<CniError>,
}

impl Recorder {
    fn record(&self, a: &CmdArgs) -> Result<(), CniError> {
        self.calls.borrow_mut().push((a.command, a.ifname.clone()));
        self.fail.clone().map_or(Ok(()), Err)
    }
}

impl Plugin for Recorder {
    fn add(&self, a: &CmdArgs) -> Result<Value, CniError> {
        self.record(a)?;
        Ok(json!({"cniVersion": "1.0.0", "ips": []}))
    }
    fn del(&self, a: &CmdArgs) -> Result<(), CniError> {
        self.record(a)
    }
    fn check(&self, a: &CmdArgs) -> Result<(), CniError> {
        self.record(a)
    }
    fn gc(&self, a: &CmdArgs) -> Result<(), CniError> {
        self.record(a)
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }
}

fn full_env(cmd: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect()
}

fn run_env(p: &Recorder, env: &HashMap<String, String>, stdin: &str) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let get = |k: &str| env.get(k).cloned();
    let code = run_with(
        p,
        "CNI test plugin",
        version::SUPPORTED,
        &get,
        &mut stdin.as_bytes(),
        &mut out,
        &mut err,
    );
    Run {
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#;

#[test]
fn no_command_prints_about() {
    let p = Recorder::default();
    let r = run_env(&p, &HashMap::new(), CONF);
    assert_eq!(r.code, 0);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("CNI test plugin"));
    assert!(r
        .stderr
        .contains("CNI protocol versions supported: 0.1.0, 0.2.0"));
}

#[test]
fn missing_env_names_variables() {
    let p = Recorder::default();
    let mut env = full_env("ADD");
    env.remove("CNI_NETNS");
    env.remove("CNI_PATH");
    let r = run_env(&p, &env, CONF);
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_eq!(v["code"], 4);
    assert_eq!(
        v["msg"],
        "required env variables [CNI_NETNS,CNI_PATH] missing"
    );
    // DEL does not need CNI_NETNS.
    let mut env = full_env("DEL");
    env.remove("CNI_NETNS");
    assert_eq!(run_env(&p, &env, CONF).code, 0);
}

#[test]
fn decode_then_name_before_dispatch() {
    let p = Recorder::default();
    let r = run_env(&p, &full_env("ADD"), "{nope");
    assert_eq!(r.json()["code"], 6);
    assert!(r.json()["msg"]
        .as_str()
        .unwrap_or("")
        .starts_with("error unmarshall network config"));
    // Unknown command with a nameless config: code 7, like the reference.
    let r = run_env(&p, &full_env("FOO"), "{}");
    assert_eq!((r.code, r.json()["code"].clone()), (1, json!(7)));
    assert_eq!(r.json()["msg"], "missing network name");
    let r = run_env(&p, &full_env("FOO"), CONF);
    assert_eq!(r.json()["code"], 4);
    assert_eq!(r.json()["msg"], "unknown CNI_COMMAND: FOO");
    let r = run_env(&p, &full_env("ADD"), r#"{"name":"bad name"}"#);
    assert_eq!(r.json()["code"], 7);
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn container_and_ifname_validation() {
    let p = Recorder::default();
    let mut env = full_env("ADD");
    env.insert("CNI_CONTAINERID".into(), "-bad".into());
    assert_eq!(run_env(&p, &env, CONF).json()["code"], 4);
    let mut env = full_env("ADD");
    env.insert("CNI_IFNAME".into(), "a-very-long-ifname".into());
    let v = run_env(&p, &env, CONF).json();
    assert_eq!(
        (v["code"].clone(), v["msg"].clone()),
        (json!(4), json!("interface name is too long"))
    );
}

#[test]
fn incompatible_version() {
    let p = Recorder::default();
    let r = run_env(&p, &full_env("ADD"), r#"{"cniVersion":"9.9.9","name":"n"}"#);
    let v = r.json();
    assert_eq!(v["code"], 1);
    assert_eq!(v["msg"], "incompatible CNI versions");
    assert!(v["details"]
        .as_str()
        .unwrap_or("")
        .starts_with(r#"config is "9.9.9""#));
    // The error is stamped with a version the runtime can read.
    assert_eq!(v["cniVersion"], version::CURRENT);
}

#[test]
fn add_prints_result_and_passes_args() {
    let p = Recorder::default();
    let r = run_env(&p, &full_env("ADD"), CONF);
    assert_eq!(r.code, 0);
    assert_eq!(r.json(), json!({"cniVersion":"1.0.0","ips":[]}));
    assert_eq!(p.calls.borrow()[0], (Command::Add, "net1".to_string()));
}

#[test]
fn check_gc_status_version_rules() {
    let p = Recorder::default();
    let r = run_env(
        &p,
        &full_env("CHECK"),
        r#"{"cniVersion":"0.3.1","name":"n"}"#,
    );
    assert_eq!(
        r.json(),
        json!({"cniVersion":"0.3.1","code":1,"msg":"config version does not allow CHECK"})
    );
    let r = run_env(&p, &full_env("GC"), CONF);
    assert_eq!(r.json()["msg"], "config version does not allow GC");
    let gc_env: HashMap<String, String> = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let r = run_env(&p, &gc_env, r#"{"cniVersion":"1.1.0","name":"n"}"#);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    let mut st = gc_env.clone();
    st.insert("CNI_COMMAND".into(), "STATUS".into());
    assert_eq!(
        run_env(&p, &st, r#"{"cniVersion":"1.1.0","name":"n"}"#).code,
        0
    );
    assert_eq!(run_env(&p, &full_env("CHECK"), CONF).code, 0);
}

#[test]
fn version_command_ignores_stdin() {
    let p = Recorder::default();
    let env: HashMap<String, String> = [("CNI_COMMAND".to_string(), "VERSION".to_string())].into();
    let r = run_env(&p, &env, "garbage");
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["supportedVersions"][6], "1.1.0");
}

#[test]
fn plugin_error_printed() {
    let p = Recorder {
        fail: Some(CniError::try_again("busy")),
        ..Recorder::default()
    };
    let r = run_env(&p, &full_env("DEL"), CONF);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.json(),
        json!({"cniVersion":"1.0.0","code":11,"msg":"busy"})
    );
}

#[test]
fn path_split() {
    assert_eq!(
        split_path("/a::/b"),
        vec![PathBuf::from("/a"), PathBuf::from("/b")]
    );
    assert!(split_path("").is_empty());
}
