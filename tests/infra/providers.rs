//! Terraform and its providers: the committed lock file pins one version of each provider that
//! `versions.tf` admits, with the registry's hashes; `required_version` covers what the module and
//! its `terraform test` files use; the README names the same versions as `versions.tf`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

use hcl::Block;
use hcl::eval::{Context, Evaluate};

use crate::{ROOT, Stack, attr, text};

/// A version as numbers, `5.100.0` → `[5, 100, 0]`.
fn version(text: &str) -> Vec<u64> {
    text.trim()
        .split('.')
        .map(|part| {
            part.parse()
                .unwrap_or_else(|_| panic!("not a version: {text}"))
        })
        .collect()
}

/// Compares two versions, missing parts counting as 0 (`5.100` = `5.100.0`).
fn compare(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    (0..len)
        .map(|i| at(a, i).cmp(&at(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Whether `candidate` meets a Terraform version constraint (`>= 5.27, < 6.0`, `~> 3.5`, `1.2.3`).
fn satisfies(candidate: &str, constraint: &str) -> bool {
    let candidate = version(candidate);
    constraint.split(',').all(|part| {
        let part = part.trim();
        let (operator, bound) = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .iter()
            .find_map(|op| part.strip_prefix(op).map(|rest| (*op, rest)))
            .unwrap_or(("=", part));
        let bound = version(bound);
        let order = compare(&candidate, &bound);
        match operator {
            ">=" => order.is_ge(),
            "<=" => order.is_le(),
            ">" => order.is_gt(),
            "<" => order.is_lt(),
            "=" => order.is_eq(),
            "!=" => order.is_ne(),
            // ~> 1.2 admits 1.2 up to 2.0; ~> 1.2.3 admits 1.2.3 up to 1.3.
            "~>" => {
                let mut upper = bound[..bound.len() - 1].to_vec();
                *upper.last_mut().expect("~> names two parts at least") += 1;
                order.is_ge() && compare(&candidate, &upper).is_lt()
            }
            _ => unreachable!(),
        }
    })
}

/// The `terraform` block of versions.tf.
fn terraform_block(stack: &Stack) -> &Block {
    let mut blocks = stack.blocks("terraform");
    let block = blocks.next().expect("a terraform block");
    assert!(blocks.next().is_none(), "one terraform block");
    block
}

/// `required_providers`: the local name → (source, version constraint).
fn required_providers(stack: &Stack) -> BTreeMap<String, (String, String)> {
    let providers = terraform_block(stack)
        .body()
        .blocks()
        .find(|b| b.identifier() == "required_providers")
        .expect("required_providers");
    providers
        .body()
        .attributes()
        .map(|a| {
            let value = a.expr().evaluate(&Context::new()).unwrap();
            let object = value.as_object().expect("source and version");
            let field = |key: &str| {
                object[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{} has no {key}", a.key()))
                    .to_owned()
            };
            (a.key().to_owned(), (field("source"), field("version")))
        })
        .collect()
}

fn required_version(stack: &Stack) -> String {
    text(attr(terraform_block(stack), "required_version"))
        .trim_matches('"')
        .to_owned()
}

/// The lowest Terraform a `>= x.y` constraint admits.
fn lowest_admitted(constraint: &str) -> Vec<u64> {
    let lower: Vec<_> = constraint
        .split(',')
        .filter_map(|part| part.trim().strip_prefix(">="))
        .map(version)
        .collect();
    assert_eq!(
        lower.len(),
        1,
        "required_version has one lower bound: {constraint}"
    );
    lower.into_iter().next().unwrap()
}

#[test]
fn the_committed_lock_file_pins_a_version_of_each_provider_that_versions_tf_admits() {
    let stack = Stack::load();
    let required = required_providers(&stack);
    let path = Path::new(ROOT).join("terraform/.terraform.lock.hcl");
    let lock = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is not committed: {e}", path.display()));
    let lock = hcl::parse(&lock).expect("the lock file is HCL");

    let mut locked = BTreeMap::new();
    for provider in lock.blocks().filter(|b| b.identifier() == "provider") {
        let address = provider.labels()[0].as_str().to_owned();
        let pinned = text(attr(provider, "version")).trim_matches('"').to_owned();
        let hashes: Vec<String> = match attr(provider, "hashes").evaluate(&Context::new()) {
            Ok(hcl::Value::Array(items)) => items
                .iter()
                .map(|h| h.as_str().expect("a hash is a string").to_owned())
                .collect(),
            other => panic!("{address}: hashes is not a list: {other:?}"),
        };
        // The lock file names each provider by its full source address (host/namespace/type);
        // versions.tf by namespace/type.
        let (_host, source) = address
            .split_once('/')
            .unwrap_or_else(|| panic!("{address}: not a host/namespace/type address"));
        locked.insert(source.to_owned(), (pinned, hashes));
    }

    let expected: Vec<String> = required
        .values()
        .map(|(source, _)| source.clone())
        .collect();
    assert_eq!(
        locked.keys().cloned().collect::<Vec<_>>(),
        {
            let mut sorted = expected.clone();
            sorted.sort();
            sorted
        },
        "one entry per required provider, no other"
    );

    for (name, (source, constraint)) in &required {
        let (pinned, hashes) = &locked[source];
        assert!(
            satisfies(pinned, constraint),
            "{name} {pinned} does not satisfy versions.tf's {constraint}"
        );
        // zh: the SHA-256 of each platform's zip, as the registry signs them; h1: the hash of an
        // unpacked package. Both kinds, well formed, no duplicate.
        let zh: Vec<_> = hashes
            .iter()
            .filter_map(|h| h.strip_prefix("zh:"))
            .collect();
        let h1: Vec<_> = hashes
            .iter()
            .filter_map(|h| h.strip_prefix("h1:"))
            .collect();
        assert_eq!(zh.len() + h1.len(), hashes.len(), "{name}: {hashes:?}");
        assert!(!zh.is_empty() && !h1.is_empty(), "{name}: {hashes:?}");
        for hash in &zh {
            assert!(
                hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "{name}: zh:{hash}"
            );
        }
        for hash in &h1 {
            assert!(
                hash.len() == 44 && hash.ends_with('=') && !hash.contains(char::is_whitespace),
                "{name}: h1:{hash}"
            );
        }
        let mut unique = hashes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), hashes.len(), "{name}: a hash twice");
    }
    // The exact versions the README names.
    assert_eq!(
        locked["hashicorp/aws"].0, "5.100.0",
        "the aws provider the README names"
    );
    assert_eq!(
        locked["hashicorp/random"].0, "3.6.3",
        "the random provider the README names"
    );
    assert!(satisfies("5.100.0", ">= 5.27, < 6.0") && !satisfies("6.0.0", ">= 5.27, < 6.0"));
    assert!(satisfies("3.6.3", "~> 3.5") && !satisfies("4.0.0", "~> 3.5"));
}

#[test]
fn terraform_is_required_at_the_version_the_module_and_its_tests_need() {
    let stack = Stack::load();
    let constraint = required_version(&stack);
    let lowest = lowest_admitted(&constraint);

    // check blocks: 1.5. mock_provider and override_*: 1.7. override_during: 1.11.
    let mut needed = vec![(vec![1, 5], "check blocks".to_owned())];
    let tests = Path::new(ROOT).join("terraform/tests");
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".tftest.hcl") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if source.contains("mock_provider") || source.contains("override_resource") {
            needed.push((vec![1, 7], format!("{file}: mock_provider and override_*")));
        }
        if source.contains("override_during") {
            needed.push((vec![1, 11], format!("{file}: override_during")));
        }
    }
    for (at_least, feature) in &needed {
        assert!(
            compare(&lowest, at_least).is_ge(),
            "required_version {constraint} admits Terraform below {at_least:?}, which lacks {feature}"
        );
    }
}

#[test]
fn the_readme_names_the_versions_that_versions_tf_requires() {
    let stack = Stack::load();
    let readme = std::fs::read_to_string(Path::new(ROOT).join("terraform/README.md")).unwrap();
    let prerequisites = readme
        .lines()
        .skip_while(|l| *l != "## Prerequisites")
        .take_while(|l| !l.starts_with("## Deploy"))
        .collect::<Vec<_>>()
        .join("\n");
    let constraint = required_version(&stack);
    assert!(
        prerequisites.contains(&format!("Terraform {constraint}")),
        "the prerequisites name Terraform {constraint}: {prerequisites}"
    );
    for (name, (source, version)) in required_providers(&stack) {
        assert!(
            prerequisites.contains(&format!("`{source}` {version}")),
            "the prerequisites name {name} as `{source}` {version}: {prerequisites}"
        );
    }
    assert!(
        prerequisites.contains(".terraform.lock.hcl"),
        "the prerequisites say the lock file pins the providers: {prerequisites}"
    );
}
