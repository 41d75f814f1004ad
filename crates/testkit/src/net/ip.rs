//! Reading kernel network state through `ip -j` (links, addresses, routes)
//! as JSON, and turning it into sortable lines tests can compare.

use serde_json::Value;

use super::{ip_args, run_ok, TestNs};

/// The IPv4 addresses of `ip -j addr show` as `a.b.c.d/len`, sorted.
pub fn v4_addr_lines(addrs: &Value) -> Vec<String> {
    let mut out: Vec<String> = addrs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
        .collect();
    out.sort();
    out
}

/// One route of `ip -j route show` as `dst via gw dev d proto p scope s`,
/// with `ip`'s own defaults for absent fields, so tests compare route tables
/// as sortable lines.
pub fn route_line(r: &Value) -> String {
    format!(
        "{} via {} dev {} proto {} scope {}",
        r["dst"].as_str().unwrap_or("?"),
        r["gateway"].as_str().unwrap_or("-"),
        r["dev"].as_str().unwrap_or("?"),
        r["protocol"].as_str().unwrap_or("boot"),
        r["scope"].as_str().unwrap_or("universe"),
    )
}

/// Runs `ip -j <args>` in `ns` (or the current namespace) and parses the JSON.
/// An empty answer (e.g. no routes) is an empty array.
pub fn ip_json(ns: Option<&TestNs>, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = run_ok("ip", &ip_args(ns.map(|n| n.name.as_str()), &full));
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!(
            "`ip -j {}` printed invalid JSON ({e}): {text}",
            args.join(" ")
        ),
    }
}

/// `ip -j -d link show`: every link with details (MTU, flags, alias, MAC).
pub fn links(ns: Option<&TestNs>) -> Value {
    ip_json(ns, &["-d", "link", "show"])
}

/// One link by name, `None` if absent.
pub fn link(ns: Option<&TestNs>, dev: &str) -> Option<Value> {
    links(ns)
        .as_array()?
        .iter()
        .find(|l| l["ifname"] == dev)
        .cloned()
}

/// `ip -j addr show dev <dev>`: the addresses of one link (its `addr_info`).
pub fn addrs(ns: Option<&TestNs>, dev: &str) -> Value {
    let shown = ip_json(ns, &["addr", "show", "dev", dev]);
    shown
        .get(0)
        .and_then(|l| l.get("addr_info"))
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()))
}

/// IPv4 then IPv6 routes of the main table.
pub fn routes(ns: Option<&TestNs>) -> Value {
    let mut all = Vec::new();
    for family in ["-4", "-6"] {
        if let Value::Array(rs) = ip_json(ns, &[family, "route", "show"]) {
            all.extend(rs);
        }
    }
    Value::Array(all)
}
