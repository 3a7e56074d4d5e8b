//! Documentation that must match the code.

const BEGIN: &str = "<!-- catalog:begin (generated from src/domain/catalog.rs; UPDATE_README=1 cargo test --test it docs) -->\n";
const END: &str = "<!-- catalog:end -->";

#[test]
fn readme_troubleshooting_matches_the_failure_catalog() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let table = handoff_bridge::domain::catalog::markdown_table();
    let (Some(start), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the catalog markers");
    };
    let current = &readme[start + BEGIN.len()..end];
    if current != table {
        if std::env::var("UPDATE_README").is_ok() {
            let updated = format!("{}{BEGIN}{table}{}", &readme[..start], &readme[end..]);
            std::fs::write("README.md", updated).unwrap();
        } else {
            panic!("README.md's Troubleshooting table differs from src/domain/catalog.rs; run UPDATE_README=1 cargo test --test it docs");
        }
    }
}
