use super::*;
use rstest::rstest;

fn names(v: &[NetworkSelection]) -> Vec<(String, String, Option<String>)> {
    v.iter()
        .map(|s| (s.namespace.clone(), s.name.clone(), s.interface.clone()))
        .collect()
}

#[test]
fn comma_form_all_shapes() {
    let got = parse_networks_annotation(" a , other/b,c@eth9 , ns2/d@net7,/e", "pods").unwrap();
    let want = [
        ("pods", "a", None),
        ("other", "b", None),
        ("pods", "c", Some("eth9")),
        ("ns2", "d", Some("net7")),
        ("pods", "e", None),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(n, m, i)| (n.to_string(), m.to_string(), i.map(str::to_owned)))
        .collect();
    assert_eq!(names(&got), want);
}

#[rstest]
#[case("a/b/c", "\"a/b/c\"")]
#[case("b@x@y", "\"b@x@y\"")]
#[case("Foo", "\"Foo\"")]
#[case("ns_1/foo", "\"ns_1\"")]
#[case("foo@waytoolonginterface", "\"waytoolonginterface\"")]
#[case("a,,b", "\"\"")]
#[case("a-", "\"a-\"")]
fn comma_form_errors_quote_the_bad_part(#[case] input: &str, #[case] quoted: &str) {
    let err = parse_networks_annotation(input, "default").unwrap_err();
    assert!(err.to_string().contains(quoted), "{err}");
}

#[test]
fn json_form_every_field() {
    let text = include_str!("../../tests/fixtures/networks_annotation_full.json");
    let got = parse_networks_annotation(text, "pods").unwrap();
    assert_eq!(got.len(), 3);
    let a = &got[0];
    assert_eq!(a.qualified_name(), "default/sriov-vnic-1");
    assert_eq!(a.interface.as_deref(), Some("net1"));
    assert_eq!(a.ips, ["198.51.100.5/24", "203.0.113.7"]);
    assert_eq!(a.mac.as_deref(), Some("02:00:17:00:aa:01"));
    assert_eq!(a.default_route, ["198.51.100.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(a.cni_args.as_ref().unwrap()["foo"], "bar");
    assert_eq!(a.port_mappings[0].host_port, 8080);
    assert_eq!(a.port_mappings[0].protocol, "tcp");
    assert_eq!(a.bandwidth.as_ref().unwrap().egress_burst, 4000);
    assert_eq!(a.device_id.as_deref(), Some("0000:00:05.0"));
    let b = &got[1];
    assert_eq!(b.qualified_name(), "pods/ib-net.v1");
    assert_eq!(
        b.interface.as_deref(),
        Some("ib0"),
        "deprecated interfaceRequest"
    );
    assert_eq!(
        b.infiniband_guid.as_deref(),
        Some("c2:11:22:33:44:55:66:77")
    );
    assert_eq!(got[2].qualified_name(), "pods/plain");
    assert_eq!(got[2].interface, None);
}

#[rstest]
#[case(
    r#"[{"name":"a","ips":["198.51.100.300/24"]}]"#,
    "\"198.51.100.300/24\""
)]
#[case(r#"[{"name":"a","ips":["nope"]}]"#, "\"nope\"")]
#[case(r#"[{"name":"a","mac":"02:00:17:00:aa"}]"#, "\"02:00:17:00:aa\"")]
#[case(r#"[{"name":"a","infiniband-guid":"zz:11"}]"#, "\"zz:11\"")]
#[case(
    r#"[{"name":"a","default-route":["198.51.100.x"]}]"#,
    "\"198.51.100.x\""
)]
#[case(r#"[{"name":"a","interface":"eth 0"}]"#, "\"eth 0\"")]
#[case(r#"[{"name":"A"}]"#, "\"A\"")]
#[case(r#"[{"name":"a","namespace":"x.y"}]"#, "\"x.y\"")]
#[case(r#"[{"namespace":"x"}]"#, "#0")]
#[case(r#"{"name":"a"}"#, "JSON list")]
#[case(r#"[{"name":"a","ips":"198.51.100.5"}]"#, "JSON list")]
fn json_form_errors_quote_the_bad_part(#[case] input: &str, #[case] quoted: &str) {
    let err = parse_networks_annotation(input, "default").unwrap_err();
    assert!(err.to_string().contains(quoted), "{err}");
}

#[test]
fn more_than_max_networks_is_refused_in_both_forms() {
    let names: Vec<String> = (0..=MAX_NETWORKS).map(|i| format!("n{i}")).collect();
    let comma = names.join(",");
    assert_eq!(
        parse_networks_annotation(&comma, "ns"),
        Err(AnnotationError::TooMany(MAX_NETWORKS + 1))
    );
    let json = serde_json::to_string(
        &names
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(
        parse_networks_annotation(&json, "ns"),
        Err(AnnotationError::TooMany(MAX_NETWORKS + 1))
    );
    let ok = names[..MAX_NETWORKS].join(",");
    assert_eq!(
        parse_networks_annotation(&ok, "ns").unwrap().len(),
        MAX_NETWORKS
    );
}

#[test]
fn empty_annotation_is_an_error() {
    assert_eq!(
        parse_networks_annotation("  ", "d"),
        Err(AnnotationError::Empty)
    );
}

#[rstest]
#[case("02:00:17:00:aa:01", true)]
#[case("02-00-17-00-AA-01", true)]
#[case("0200.1700.aa01", true)]
#[case("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", true)]
#[case("02:00:17:00:aa:1", false)]
#[case("02001700aa01", false)]
fn hardware_addresses(#[case] s: &str, #[case] ok: bool) {
    assert_eq!(is_hw_addr(s), ok);
}
