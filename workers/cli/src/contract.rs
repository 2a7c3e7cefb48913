//! `qbill contract`: writes what the routes declare ([`qbill_core::routes::operations`]) into the
//! files that repeat it, between their markers, and with `--check` says which of them drifted:
//!
//! - `gateway-config/openapi.yaml`: each route's POST path (its SendMessage template, written once
//!   here in [`send_message`]) and the request models, from the routes' body types;
//! - `scripts/check-gateway.py`: the routes it checks, and those that take no token;
//! - `web/src/contract/routes.ts`: the web app's route map (path to reply kind, and no token);
//! - `web/src/contract/replies.ts`: the web app's reply types, from the routes' reply types;
//! - `docs/contract.md`: the table of routes, and the fields of each reply's data;
//! - `docs/events.md`: the event catalogue, the envelope's and each payload's JSON Schema.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use qbill_core::routes::{Callers, Operation, operations};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// One generated region of a file: what lies between its two marker lines.
struct Region {
    file: &'static str,
    begin: &'static str,
    end: &'static str,
    text: String,
}

/// Writes every region (or, with `check`, fails naming each that differs).
pub fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    let regions = regions()?;
    let mut stale = Vec::new();
    for region in &regions {
        let path = root.join(region.file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let updated = replace(&text, region).with_context(|| region.file)?;
        if updated != text {
            if check {
                stale.push(first_difference(region.file, &text, &updated));
            } else {
                std::fs::write(&path, updated)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", region.file);
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "the contract drifted from the routes; run `qbill contract` and commit:\n{}",
            stale.join("\n")
        );
    }
    if check {
        println!(
            "the contract matches the routes ({} routes)",
            operations().len()
        );
    }
    Ok(())
}

/// The repository root: the nearest folder up from here holding `gateway-config/`.
pub fn find_root() -> anyhow::Result<PathBuf> {
    let here = std::env::current_dir()?;
    here.ancestors()
        .find(|dir| dir.join("gateway-config/openapi.yaml").is_file())
        .map(Path::to_path_buf)
        .context("run `qbill contract` inside the repository (no gateway-config/ above here)")
}

fn regions() -> anyhow::Result<Vec<Region>> {
    let operations = operations();
    let (paths, schemas) = openapi(&operations)?;
    Ok(vec![
        Region {
            file: "gateway-config/openapi.yaml",
            begin: "  # contract:paths:begin",
            end: "  # contract:paths:end",
            text: paths,
        },
        Region {
            file: "gateway-config/openapi.yaml",
            begin: "    # contract:schemas:begin",
            end: "    # contract:schemas:end",
            text: schemas,
        },
        Region {
            file: "scripts/check-gateway.py",
            begin: "# contract:begin",
            end: "# contract:end",
            text: check_gateway(&operations),
        },
        Region {
            file: "web/src/contract/routes.ts",
            begin: "// contract:begin",
            end: "// contract:end",
            text: web_routes(&operations),
        },
        Region {
            file: "web/src/contract/replies.ts",
            begin: "// contract:begin",
            end: "// contract:end",
            text: web_replies(&operations)?,
        },
        Region {
            file: "docs/contract.md",
            begin: "<!-- contract:routes:begin -->",
            end: "<!-- contract:routes:end -->",
            text: docs_table(&operations)?,
        },
        Region {
            file: "docs/contract.md",
            begin: "<!-- contract:replies:begin -->",
            end: "<!-- contract:replies:end -->",
            text: docs_replies(&operations),
        },
        Region {
            file: "docs/events.md",
            begin: "<!-- events:catalogue:begin -->",
            end: "<!-- events:catalogue:end -->",
            text: events_catalogue()?,
        },
    ])
}

/// `text` with the region's lines between its markers replaced.
fn replace(text: &str, region: &Region) -> anyhow::Result<String> {
    let marker = |m: &str| {
        text.find(&format!("{m}\n"))
            .with_context(|| format!("the marker line `{m}` is missing"))
    };
    let begin = marker(region.begin)? + region.begin.len() + 1;
    let end = marker(region.end)?;
    if end < begin {
        bail!("`{}` comes before `{}`", region.end, region.begin);
    }
    Ok(format!("{}{}{}", &text[..begin], region.text, &text[end..]))
}

fn first_difference(file: &str, old: &str, new: &str) -> String {
    let (line, (was, would)) = old
        .lines()
        .zip(new.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, pair)| (i + 1, pair))
        .unwrap_or((old.lines().count().min(new.lines().count()) + 1, ("", "")));
    format!("  {file}, line {line}:\n    is:        {was}\n    should be: {would}")
}

/// The name of a route's request model: `me_password` -> `MePasswordRequest`.
fn model_name(op: &Operation) -> String {
    let mut name: String = op
        .kind
        .as_str()
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    name.push_str("Request");
    name
}

/// Who may call the route, as the docs and summaries say it.
fn callers(op: &Operation) -> String {
    match op.callers {
        Callers::Anyone => "no token".to_owned(),
        Callers::Roles(roles) if roles.len() == 3 => "any caller with a token".to_owned(),
        Callers::Roles(roles) => roles
            .iter()
            .map(|r| format!("{r}s"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn summary(op: &Operation) -> String {
    format!(
        "{} (reply kind `{}`; {}).",
        op.summary.trim_end_matches('.'),
        op.kind.reply_kind(),
        callers(op)
    )
}

/// The routes' paths and the models, as YAML lines for the two regions of `openapi.yaml`.
fn openapi(operations: &[Operation]) -> anyhow::Result<(String, String)> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths = String::new();
    let mut models = Vec::new();
    for op in operations {
        let mut body = (op.body)(&mut generator).to_value();
        clean(&mut body);
        models.push((model_name(op), request_model(body)?));
        path_item(&mut paths, op);
    }
    let mut definitions: Map<String, Value> = generator
        .take_definitions(true)
        .into_iter()
        .map(|(name, mut schema)| {
            clean(&mut schema);
            (name, schema)
        })
        .collect();
    let mut schemas = String::new();
    // The shared shapes first, then each route's model in the order of the routes.
    let mut names: Vec<String> = definitions.keys().cloned().collect();
    names.sort();
    for name in names {
        let schema = definitions.remove(&name).expect("listed");
        yaml_entry(&mut schemas, 4, &name, &schema);
    }
    for (name, schema) in &models {
        yaml_entry(&mut schemas, 4, name, schema);
    }
    Ok((paths, schemas))
}

/// A body's schema as the gateway's model: `queue_name` and `request_id` first, both required.
fn request_model(body: Value) -> anyhow::Result<Value> {
    let Value::Object(mut body) = body else {
        bail!("a body's schema is not an object: {body}");
    };
    let uuid = serde_json::json!({ "$ref": "#/components/schemas/Uuid" });
    let mut properties = Map::new();
    properties.insert("queue_name".into(), uuid.clone());
    properties.insert("request_id".into(), uuid);
    let mut required = vec![Value::from("queue_name"), Value::from("request_id")];
    if let Some(Value::Array(names)) = body.remove("required") {
        required.extend(names);
    }
    let own = match body.remove("properties") {
        Some(Value::Object(own)) => own,
        _ => Map::new(),
    };
    // Required fields in the body's order, then the optional ones.
    for name in required.iter().filter_map(Value::as_str) {
        if let Some(schema) = own.get(name) {
            properties.insert(name.to_owned(), schema.clone());
        }
    }
    for (name, schema) in own {
        properties.entry(name).or_insert(schema);
    }
    let mut model = Map::new();
    model.insert("type".into(), "object".into());
    model.insert("additionalProperties".into(), false.into());
    model.insert("required".into(), Value::Array(required));
    for (key, value) in body {
        if key != "type" && key != "additionalProperties" {
            model.insert(key, value);
        }
    }
    model.insert("properties".into(), Value::Object(properties));
    Ok(Value::Object(model))
}

/// Drops what the derive adds that the gateway's models never had: titles and descriptions (the
/// routes' code documents them), `nullable` and `default: null` of optional fields, and the
/// `format` of integers (`int64`), which JSON Schema draft 4 does not check.
fn clean(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("title");
            map.remove("description");
            // An optional field is left out, never null: the gateway refuses a null there.
            map.remove("nullable");
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if map.get("type") == Some(&Value::from("integer")) {
                map.remove("format");
            }
            for (key, value) in map.iter_mut() {
                if key == "properties" {
                    // Its keys are field names, not keywords: clean each field's schema.
                    if let Value::Object(fields) = value {
                        fields.values_mut().for_each(clean);
                    }
                } else {
                    clean(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean),
        _ => {}
    }
}

/// The keys of a schema in the order people read them; others after, by name.
const KEY_ORDER: &[&str] = &[
    "$ref",
    "type",
    "description",
    "additionalProperties",
    "required",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "items",
    "allOf",
    "anyOf",
    "not",
];

fn ordered(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    let rank = |k: &str| {
        KEY_ORDER
            .iter()
            .position(|o| *o == k)
            .unwrap_or(KEY_ORDER.len())
    };
    entries.sort_by(|(a, _), (b, _)| {
        // `properties` keeps its order and comes last.
        let last = |k: &str| k == "properties";
        (last(a), rank(a), a.as_str()).cmp(&(last(b), rank(b), b.as_str()))
    });
    entries
}

/// One `key: value` of YAML at `indent` spaces: short values on one line (as JSON, which YAML
/// reads), objects over several.
fn yaml_entry(out: &mut String, indent: usize, key: &str, value: &Value) {
    let pad = " ".repeat(indent);
    let key = key_text(key);
    let one_line = flow(value);
    let properties_inside = matches!(value, Value::Object(m) if m.contains_key("properties") || m.contains_key("allOf"));
    if one_line.len() + indent + key.len() <= 96 && !properties_inside {
        let _ = writeln!(out, "{pad}{key}: {one_line}");
        return;
    }
    match value {
        Value::Object(map) => {
            let _ = writeln!(out, "{pad}{key}:");
            for (k, v) in ordered(map) {
                yaml_entry(out, indent + 2, k, v);
            }
        }
        Value::Array(items) => {
            let _ = writeln!(out, "{pad}{key}:");
            for item in items {
                match item {
                    Value::Object(map) if flow_len(item) + indent > 90 => {
                        let mut first = true;
                        for (k, v) in ordered(map) {
                            let mut line = String::new();
                            yaml_entry(&mut line, indent + 4, k, v);
                            if first {
                                line.replace_range(indent + 2..indent + 4, "- ");
                                first = false;
                            }
                            out.push_str(&line);
                        }
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}  - {}", flow(item));
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{key}: {one_line}");
        }
    }
}

/// A key as YAML reads it: bare when it is a name (`$ref`, `bill.created`), else quoted.
fn key_text(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_$.-".contains(c))
    {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

fn flow_len(value: &Value) -> usize {
    flow(value).len()
}

/// A value on one line: JSON with spaces, keys in reading order.
fn flow(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(map) => {
            let inner: Vec<String> = ordered(map)
                .into_iter()
                .map(|(k, v)| format!("{}: {}", key_text(k), flow(v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::String(text) if plain(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether a string reads the same unquoted in YAML: a word that is no YAML keyword.
fn plain(text: &str) -> bool {
    let word = text
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    word && !text.is_empty()
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
}

/// The SendMessage template of a route: the body verbatim, and the envelope as message
/// attributes: the route, the gateway's request id and time, the path's ids, the Authorization
/// header (routes that take a token) and the caller's address.
fn send_message(op: &Operation) -> String {
    let mut attributes: Vec<(&str, &str, String)> = vec![
        ("route", "String", op.kind.as_str().to_owned()),
        (
            "gateway_request_id",
            "String",
            "$util.urlEncode($context.requestId)".to_owned(),
        ),
        (
            "request_time",
            "Number",
            "$context.requestTimeEpoch".to_owned(),
        ),
    ];
    for parameter in op.path_parameters() {
        attributes.push((
            parameter,
            "String",
            format!("$util.urlEncode($input.params('{parameter}'))"),
        ));
    }
    if op.takes_token() {
        attributes.push((
            "authorization",
            "String",
            "header:$util.urlEncode($input.params().header.get('Authorization'))".to_owned(),
        ));
    }
    attributes.push((
        "source_ip",
        "String",
        "ip:$util.urlEncode($context.identity.sourceIp)".to_owned(),
    ));
    let mut template =
        String::from("\"Action=SendMessage&MessageBody=$util.urlEncode($input.body)\\\n");
    for (i, (name, data_type, value)) in attributes.iter().enumerate() {
        let n = i + 1;
        let _ = write!(
            template,
            "            &MessageAttribute.{n}.Name={name}&MessageAttribute.{n}.Value.DataType={data_type}\\\n            &MessageAttribute.{n}.Value.StringValue={value}"
        );
        template.push_str(if n == attributes.len() { "\"" } else { "\\\n" });
    }
    template
}

fn path_item(out: &mut String, op: &Operation) {
    let parameters: Vec<String> = op
        .path_parameters()
        .into_iter()
        .map(|p| format!("*{p}_parameter"))
        .collect();
    let _ = writeln!(out, "  {}:", op.path);
    let _ = writeln!(out, "    post:");
    let _ = writeln!(out, "      operationId: {}", op.kind);
    let validator = if op.takes_token() {
        "body_and_token"
    } else {
        "body"
    };
    let _ = writeln!(
        out,
        "      x-amazon-apigateway-request-validator: {validator}"
    );
    let _ = writeln!(out, "      summary: {}", Value::from(summary(op)));
    let mut with_token = parameters.clone();
    if op.takes_token() {
        with_token.push("*authorization_parameter".into());
    }
    if !with_token.is_empty() {
        let _ = writeln!(out, "      parameters: [{}]", with_token.join(", "));
    }
    let _ = writeln!(
        out,
        "      requestBody:\n        required: true\n        content:\n          application/json:\n            schema: {{ $ref: \"#/components/schemas/{}\" }}",
        model_name(op)
    );
    let _ = writeln!(out, "      responses: *accepted");
    let _ = writeln!(
        out,
        "      x-amazon-apigateway-integration:
        type: aws
        httpMethod: POST
        uri: arn:${{partition}}:apigateway:${{aws_region}}:sqs:path/${{account_id}}/${{request_queue_name}}
        credentials: ${{gateway_role_arn}}
        passthroughBehavior: never
        requestParameters: *send_request_parameters
        requestTemplates:
          application/json: {}
        responses: *send_responses",
        send_message(op)
    );
    if parameters.is_empty() {
        let _ = writeln!(out, "    options: *preflight_post");
    } else {
        let _ = writeln!(
            out,
            "    options:
      summary: CORS preflight, answered by the gateway.
      parameters: [{}]
      responses: *preflight_responses
      x-amazon-apigateway-integration: *preflight_post_integration",
            parameters.join(", ")
        );
    }
    out.push('\n');
}

fn check_gateway(operations: &[Operation]) -> String {
    let mut out = String::from(
        "# Written by `qbill contract` from the routes: every POST route, and those that take no token.\nROUTES = {\n",
    );
    for op in operations {
        let _ = writeln!(out, "    \"{}\": \"{}\",", op.path, op.kind);
    }
    out.push_str("}\nTOKENLESS = {");
    let tokenless: Vec<String> = operations
        .iter()
        .filter(|op| !op.takes_token())
        .map(|op| format!("\"{}\"", op.kind))
        .collect();
    out.push_str(&tokenless.join(", "));
    out.push_str("}\n");
    out
}

fn web_routes(operations: &[Operation]) -> String {
    let mut out =
        String::from("/** The reply kind of each POST route. */\nexport const routes = {\n");
    for op in operations {
        let _ = writeln!(out, "  \"{}\": \"{}\",", op.path, op.kind.reply_kind());
    }
    out.push_str("} as const;\n\n/** The routes that take no token: logging in and the account mails' links. */\nexport const anonymous: ReadonlySet<string> = new Set([\n");
    for op in operations.iter().filter(|op| !op.takes_token()) {
        let _ = writeln!(out, "  \"{}\",", op.path);
    }
    out.push_str("]);\n\n/** Every reply kind. */\nexport type Kind =\n");
    let mut kinds: Vec<&str> = operations
        .iter()
        .map(|op| op.kind.reply_kind().as_str())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let _ = writeln!(out, "  | \"{kind}\"");
    }
    out.push_str(";\n");
    out
}

/// The web app's reply types: each route's reply data ([`qbill_core::routes::Route::Reply`]) and
/// the shapes it names, as TypeScript, and the map from reply kind to data.
fn web_replies(operations: &[Operation]) -> anyhow::Result<String> {
    let mut generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut types: std::collections::BTreeMap<String, Value> = Default::default();
    let mut kinds: std::collections::BTreeMap<&str, String> = Default::default();
    for op in operations {
        let name = (op.reply_name)().into_owned();
        let schema = (op.reply)(&mut generator).to_value();
        if let Some(other) = types.get(&name).filter(|other| **other != schema) {
            bail!("two reply types are named {name}: {other} and {schema}");
        }
        kinds.insert(op.kind.reply_kind().as_str(), name.clone());
        types.insert(name, schema);
    }
    types.extend(generator.take_definitions(true));
    let mut out = String::new();
    for (name, schema) in &types {
        doc_comment(&mut out, "", schema);
        let is_interface = schema.get("properties").is_some() && schema.get("allOf").is_none();
        if is_interface {
            let _ = writeln!(out, "export interface {name} {}\n", ts_type(schema, "")?);
        } else {
            let _ = writeln!(out, "export type {name} = {};\n", ts_type(schema, "")?);
        }
    }
    out.push_str("/** Each reply kind and its data. */\nexport interface ReplyData {\n");
    for (kind, name) in kinds {
        let _ = writeln!(out, "  {kind}: {name};");
    }
    out.push_str("}\n");
    Ok(out)
}

/// The docs' table of replies: each reply kind, its data type (as `replies.ts` names it) and the
/// data's fields, those that may be left out marked so.
fn docs_replies(operations: &[Operation]) -> String {
    let mut generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut out = String::from(
        "| reply `kind` | data type | its fields (? when it may be left out) |\n|---|---|---|\n",
    );
    let mut seen = std::collections::HashSet::new();
    for op in operations {
        let kind = op.kind.reply_kind();
        if !seen.insert(kind) {
            continue;
        }
        let schema = (op.reply)(&mut generator).to_value();
        let required = names(schema.get("required"));
        let fields: Vec<String> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| {
                properties
                    .keys()
                    .map(|name| {
                        let optional = if required.contains(&name.as_str()) {
                            ""
                        } else {
                            "?"
                        };
                        format!("`{name}`{optional}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{kind}` | `{}` | {} |",
            (op.reply_name)(),
            fields.join(", ")
        );
    }
    out
}

/// The names in an object schema's `required`, if it has one.
fn names(required: Option<&Value>) -> Vec<&str> {
    required
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A schema's description as a doc comment, indented by `indent`.
fn doc_comment(out: &mut String, indent: &str, schema: &Value) {
    let Some(text) = schema.get("description").and_then(Value::as_str) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    if let [line] = lines[..] {
        let _ = writeln!(out, "{indent}/** {line} */");
    } else {
        let _ = writeln!(out, "{indent}/**");
        for line in lines {
            let _ = writeln!(out, "{}", format!("{indent} * {line}").trim_end());
        }
        let _ = writeln!(out, "{indent} */");
    }
}

/// A JSON Schema (the part schemars writes for reply types) as a TypeScript type; `indent` is
/// that of the line it starts on.
fn ts_type(schema: &Value, indent: &str) -> anyhow::Result<String> {
    let map = match schema {
        Value::Bool(true) => return Ok("unknown".into()),
        Value::Object(map) => map,
        other => bail!("a reply schema that is not an object: {other}"),
    };
    if let Some(Value::String(to)) = map.get("$ref") {
        return Ok(to.rsplit('/').next().unwrap_or(to).to_owned());
    }
    if let Some(value) = map.get("const") {
        return Ok(value.to_string());
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        return Ok(values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | "));
    }
    for (key, joint) in [("anyOf", " | "), ("oneOf", " | "), ("allOf", " & ")] {
        if let Some(Value::Array(parts)) = map.get(key) {
            let parts = parts
                .iter()
                .map(|part| ts_type(part, indent).map(|t| grouped(&t)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            return Ok(parts.join(joint));
        }
    }
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Ok("unknown".into()),
    };
    let mut union = Vec::new();
    for ty in types {
        union.push(match ty {
            "string" => match map.get("format").and_then(Value::as_str) {
                Some("date-time") => "Instant".to_owned(),
                Some("date") => "IsoDate".to_owned(),
                Some("uuid") => "Uuid".to_owned(),
                _ => "string".to_owned(),
            },
            "integer" | "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => match map.get("items") {
                Some(items) => format!("{}[]", grouped(&ts_type(items, indent)?)),
                None => "unknown[]".to_owned(),
            },
            "object" => ts_object(map, indent)?,
            other => bail!("a reply schema of type {other}"),
        });
    }
    Ok(union.join(" | "))
}

/// An object schema: its properties, optional where not required, or a record of its values.
fn ts_object(map: &Map<String, Value>, indent: &str) -> anyhow::Result<String> {
    let Some(Value::Object(properties)) = map.get("properties") else {
        return Ok(match map.get("additionalProperties") {
            Some(values @ Value::Object(_)) => {
                format!("Record<string, {}>", ts_type(values, indent)?)
            }
            _ => "Record<string, unknown>".to_owned(),
        });
    };
    let required = names(map.get("required"));
    let inner = format!("{indent}  ");
    let mut out = String::from("{\n");
    for (name, schema) in properties {
        doc_comment(&mut out, &inner, schema);
        let optional = if required.contains(&name.as_str()) {
            ""
        } else {
            "?"
        };
        let _ = writeln!(
            out,
            "{inner}{name}{optional}: {};",
            ts_type(schema, &inner)?
        );
    }
    out.push_str(indent);
    out.push('}');
    Ok(out)
}

/// A type in parentheses when it is a union or an intersection, to be an array's element.
fn grouped(ty: &str) -> String {
    let mut depth = 0i32;
    let mut top_level_joint = false;
    for (i, c) in ty.char_indices() {
        match c {
            '{' | '(' | '<' | '[' => depth += 1,
            '}' | ')' | '>' | ']' => depth -= 1,
            '|' | '&' if depth == 0 && i > 0 => top_level_joint = true,
            _ => {}
        }
    }
    if top_level_joint {
        format!("({ty})")
    } else {
        ty.to_owned()
    }
}

fn docs_table(operations: &[Operation]) -> anyhow::Result<String> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut out = String::from(
        "| method and path | who | body besides `queue_name`, `request_id` | reply `kind` | what it does |\n|---|---|---|---|---|\n",
    );
    for op in operations {
        let body = (op.body)(&mut generator).to_value();
        let required = names(body.get("required"));
        let mut fields: Vec<String> = Vec::new();
        if let Some(Value::Object(properties)) = body.get("properties") {
            let mut optional = Vec::new();
            for name in &required {
                fields.push(format!("`{name}`"));
            }
            for name in properties.keys() {
                if !required.contains(&name.as_str()) {
                    optional.push(format!("`{name}`"));
                }
            }
            if !optional.is_empty() {
                fields.push(format!("optional {}", optional.join(", ")));
            }
        }
        let fields = if fields.is_empty() {
            "nothing".to_owned()
        } else {
            fields.join(", ")
        };
        let _ = writeln!(
            out,
            "| `POST {}` | {} | {} | `{}` | {} |",
            op.path,
            callers(op),
            fields,
            op.kind.reply_kind(),
            op.summary.replace('|', "\\|")
        );
    }
    Ok(out)
}

/// The events' catalogue: each type, what it means and its payload's schema, then the envelope
/// every consumer gets and each payload's JSON Schema (draft 2020-12), from the catalogue's types.
fn events_catalogue() -> anyhow::Result<String> {
    use qbill_core::events::{Event, Type, VERSION, catalogue};
    let mut generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    // What each type means: the enum's variant docs, as its schema carries them.
    let types = generator.root_schema_for::<Type>().to_value();
    let about = |name: &str| -> String {
        types
            .get("oneOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|v| v.get("const").and_then(Value::as_str) == Some(name))
            .and_then(|v| v.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " ")
    };
    let mut payloads: Vec<(Type, String)> = Vec::new();
    for &kind in Type::ALL {
        let schema = catalogue::schema(kind, &mut generator).to_value();
        let name = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .with_context(|| format!("{} has no named payload", kind.as_str()))?;
        payloads.push((kind, name.to_owned()));
    }
    let mut out =
        format!("Payload version {VERSION}.\n\n| type | what happened | `data` |\n|---|---|---|\n");
    for (kind, name) in &payloads {
        let _ = writeln!(
            out,
            "| `{}` | {} | [`{name}`](#{}) |",
            kind.as_str(),
            about(kind.as_str()),
            name.to_lowercase()
        );
    }
    generator.subschema_for::<Event>();
    let definitions = generator.take_definitions(true);
    let envelope = definitions
        .get("Event")
        .context("no schema for the envelope")?;
    let _ = write!(
        out,
        "\n### The envelope\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(envelope)?
    );
    // The types are the table above; the envelope is printed.
    let mut seen: std::collections::HashSet<String> =
        ["Event".to_owned(), "Type".to_owned()].into();
    for (_, name) in &payloads {
        if !seen.insert(name.clone()) {
            continue;
        }
        let schema = definitions
            .get(name)
            .with_context(|| format!("no schema for {name}"))?;
        let _ = write!(
            out,
            "\n### {name}\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(schema)?
        );
    }
    let shared: Vec<String> = definitions
        .iter()
        .filter(|(name, _)| !seen.contains(*name))
        .map(|(name, schema)| format!("- `{name}`: `{schema}`"))
        .collect();
    if !shared.is_empty() {
        let _ = write!(out, "\n### Shared shapes\n\n{}\n", shared.join("\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files the contract writes, copied to a folder of their own.
    fn copy_of_the_files() -> tempfile_dir::Dir {
        let root = find_root().expect("the repository");
        let dir = tempfile_dir::Dir::new();
        for region in regions().expect("regions") {
            let to = dir.path().join(region.file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(root.join(region.file), to).unwrap();
        }
        dir
    }

    #[test]
    fn the_committed_files_are_what_the_routes_declare() {
        run(&find_root().unwrap(), true).expect("run `qbill contract` and commit");
    }

    #[test]
    fn a_path_a_model_a_route_map_or_a_reply_type_that_drifted_fails_the_check() {
        for (file, from, to) in [
            (
                "gateway-config/openapi.yaml",
                "  /me/password:",
                "  /me/passwd:",
            ),
            (
                "gateway-config/openapi.yaml",
                "maxLength: 1024",
                "maxLength: 4096",
            ),
            (
                "web/src/contract/routes.ts",
                "\"/me/password\": \"me_password\"",
                "\"/me/password\": \"me\"",
            ),
            (
                "scripts/check-gateway.py",
                "TOKENLESS = {\"auth\", ",
                "TOKENLESS = {",
            ),
            ("docs/contract.md", "| `POST /auth` |", "| `POST /login` |"),
            (
                "docs/contract.md",
                "`payment_id`, `status`, `total`",
                "`payment_id`, `status`, `sum`",
            ),
            (
                "web/src/contract/replies.ts",
                "  payment_id: Uuid;",
                "  payment_id: number;",
            ),
        ] {
            let dir = copy_of_the_files();
            let path = dir.path().join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file} has no {from:?}");
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
            let failed = run(dir.path(), true).expect_err("a drift fails the check");
            assert!(failed.to_string().contains(file), "{failed}");
            // Writing puts it back.
            run(dir.path(), false).unwrap();
            run(dir.path(), true).unwrap();
        }
    }

    /// A folder removed when dropped.
    mod tempfile_dir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let path =
                    std::env::temp_dir().join(format!("qbill-contract-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
