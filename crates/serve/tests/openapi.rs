//! The OpenAPI file documents exactly the paths the HTTP server answers.

use std::collections::BTreeSet;

#[test]
fn openapi_documents_every_route_and_nothing_else() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/openapi.yaml");
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(doc["openapi"].as_str(), Some("3.0.3"));
    let documented: BTreeSet<String> = doc["paths"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let served: BTreeSet<String> = crmdq_serve::api::PATHS
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    assert_eq!(documented, served);
    // Every $ref points at something defined.
    let text = std::fs::read_to_string(path).unwrap();
    for r in text.split("$ref: \"#/").skip(1) {
        let target = &r[..r.find('"').unwrap()];
        let mut node = &doc;
        for part in target.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref #/{target}");
    }
}
