//! The server on its own: port 0, values in and out, faults, status names, a prompt stop.
//! (Clients against it are the Python interop tests, with asyncua as the peer.)

use bifrost_opcua::{
    status_code, status_name, SecurityPolicy, Server, ServerConfig, StatusFault, Value, ValueType,
    Variable,
};

fn config(variables: Vec<Variable>) -> ServerConfig {
    ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        path: "/bifrost".into(),
        advertised_url: None,
        application_uri: "urn:bifrost:test".into(),
        application_name: "test".into(),
        namespaces: vec!["urn:bifrost:t".into()],
        device: "hmi".into(),
        security: vec![SecurityPolicy::None],
        certificate: None,
        users: Vec::new(),
        variables,
    }
}

fn variable(tag: &str, value: Value) -> Variable {
    Variable {
        node_id: format!("nsu=urn:bifrost:t;s={tag}"),
        path: tag.split('.').map(str::to_owned).collect(),
        value_type: value.value_type(),
        writable: true,
        unit: Some("%".into()),
        initial: value,
    }
}

#[test]
fn starts_on_port_zero_numbers_its_nodes_and_stops_promptly() {
    let mut server = Server::start(config(vec![
        variable("tank.level", Value::Float(40.0)),
        variable("tank", Value::Int16(3)),
    ]))
    .expect("starts");
    assert_ne!(server.port(), 0);
    assert_eq!(
        server.url(),
        format!("opc.tcp://127.0.0.1:{}/bifrost", server.port())
    );
    assert_eq!(server.namespaces()[2], "urn:bifrost:t");
    assert_eq!(server.node_ids(), ["ns=2;s=tank.level", "ns=2;s=tank"]);
    server.stop();
    assert!(!server.is_running());
}

#[test]
fn values_pushed_in_are_held_and_wrong_types_rejected() {
    let server = Server::start(config(vec![variable("a", Value::Double(1.0))])).expect("starts");
    let rejected = server.set_values(vec![
        (
            0,
            Value::Double(2.5),
            status_code("UncertainLastUsableValue").unwrap(),
            0,
        ),
        (0, Value::Boolean(true), 0, 0),
        (7, Value::Double(1.0), 0, 0),
    ]);
    assert_eq!(rejected, [0, 7]);
    let (value, status, _) = server.value(0).expect("held");
    assert_eq!(value, Value::Double(2.5));
    assert_eq!(status_name(status), "UncertainLastUsableValue");
    server.set_status_fault(Some(StatusFault {
        nodes: Some(vec![0]),
        status: status_code("BadCommunicationError").unwrap(),
        probability: 1.0,
        count: Some(1),
        seed: 0,
    }));
    assert!(server.drain_writes().is_empty());
}

#[test]
fn an_array_variable_holds_arrays_of_its_type_only() {
    let doubles = |items: &[f64]| {
        Value::Array(
            ValueType::Double,
            items.iter().copied().map(Value::Double).collect(),
        )
    };
    let server =
        Server::start(config(vec![variable("profile", doubles(&[1.5, 2.5]))])).expect("starts");
    let rejected = server.set_values(vec![
        (0, doubles(&[4.0, 5.0, 6.0]), 0, 0),
        (0, Value::Double(7.0), 0, 0), // a scalar for an array
        (
            0,
            Value::Array(ValueType::Int32, vec![Value::Int32(1)]),
            0,
            0,
        ),
    ]);
    assert_eq!(rejected, [0, 0]);
    let (value, _, _) = server.value(0).expect("held");
    assert_eq!(value, doubles(&[4.0, 5.0, 6.0]));
    assert!(value.is_array() && value.value_type() == ValueType::Double);
}

#[test]
fn a_bad_node_id_or_a_secure_policy_without_certificate_is_an_error() {
    let mut bad = variable("x", Value::Boolean(false));
    bad.node_id = "ns=2;q=nonsense".into();
    let err = Server::start(config(vec![bad])).err().expect("refused");
    assert!(err.to_string().contains("not a NodeId"), "{err}");
    let mut secure = config(Vec::new());
    secure.security = vec![SecurityPolicy::Basic256Sha256];
    let err = Server::start(secure).err().expect("refused");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn status_codes_by_name_both_ways() {
    for name in [
        "Good",
        "BadNodeIdUnknown",
        "BadNotWritable",
        "BadUserAccessDenied",
    ] {
        assert_eq!(status_name(status_code(name).expect(name)), name);
    }
    assert_eq!(status_code("BadNodeIdUnknown"), Some(0x8034_0000));
    assert_eq!(status_code("NoSuchStatus"), None);
    assert_eq!(ValueType::from_name("UInt64"), Some(ValueType::UInt64));
}
