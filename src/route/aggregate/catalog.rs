//! The discovery cache: what each service offers (its `initialize` answer and
//! its tools, prompts, resources and resource templates), kept for a while so
//! `tools/list` on an aggregated endpoint needs no backend at all.
//!
//! Entries are per service, and per person for services whose backend depends
//! on the person (`$user`, `$userToken`). Items are kept as ready JSON text in
//! both forms (as the service names them, and prefixed), so a list is a
//! policy check and a concatenation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::names;
use crate::caller::UserId;
use crate::config::ServiceName;
use crate::policy::ItemKind;

/// Which list an item is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::Templates,
    ];

    pub fn of_method(method: &str) -> Option<ListKind> {
        Some(match method {
            "tools/list" => ListKind::Tools,
            "prompts/list" => ListKind::Prompts,
            "resources/list" => ListKind::Resources,
            "resources/templates/list" => ListKind::Templates,
            _ => return None,
        })
    }

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The field of the result holding the items.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The field of an item that names it.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::Templates => "uriTemplate",
        }
    }

    pub fn item_kind(self) -> ItemKind {
        match self {
            ListKind::Tools => ItemKind::Tool,
            ListKind::Prompts => ItemKind::Prompt,
            ListKind::Resources | ListKind::Templates => ItemKind::Resource,
        }
    }

    /// The server capability that says the list exists.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    /// The notification a server sends when the list changed.
    pub fn of_notification(method: &str) -> Option<&'static [ListKind]> {
        Some(match method {
            "notifications/tools/list_changed" => &[ListKind::Tools],
            "notifications/prompts/list_changed" => &[ListKind::Prompts],
            "notifications/resources/list_changed" => &[ListKind::Resources, ListKind::Templates],
            _ => return None,
        })
    }
}

/// One tool, prompt, resource or template.
#[derive(Debug)]
pub struct Item {
    /// Its name (or URI, or URI template) as the service gives it.
    pub name: String,
    /// Its JSON as the service gives it.
    pub plain: String,
    /// Its JSON renamed for an aggregated endpoint; `None` when the renamed
    /// name would break the MCP naming rules (it is then left out there).
    pub prefixed: Option<String>,
}

/// What one service offers.
#[derive(Debug)]
pub struct Catalog {
    pub fetched: Instant,
    /// The service's `initialize` result.
    pub init: Value,
    lists: HashMap<ListKind, Vec<Item>>,
    tools: HashSet<String>,
    prompts: HashSet<String>,
}

impl Catalog {
    /// Build from raw list items; renames for the aggregated form.
    pub fn new(
        service: &ServiceName,
        delimiter: &str,
        init: Value,
        raw: HashMap<ListKind, Vec<Value>>,
    ) -> Catalog {
        let mut lists = HashMap::new();
        let (mut tools, mut prompts) = (HashSet::new(), HashSet::new());
        for (kind, items) in raw {
            let mut out = Vec::with_capacity(items.len());
            let mut seen = HashSet::new();
            for item in items {
                let Some(name) = item.get(kind.key()).and_then(Value::as_str) else {
                    continue;
                };
                let name = name.to_string();
                if !seen.insert(name.clone()) {
                    tracing::warn!(service = %service, "the service lists {name:?} twice; the first one is kept");
                    continue;
                }
                let renamed = match kind {
                    ListKind::Tools | ListKind::Prompts => {
                        Some(names::prefixed(service.as_str(), delimiter, &name))
                            .filter(|n| kind == ListKind::Prompts || names::valid_tool_name(n))
                    }
                    ListKind::Resources | ListKind::Templates => {
                        Some(names::prefixed_uri(service.as_str(), &name))
                    }
                };
                if renamed.is_none() {
                    tracing::warn!(
                        service = %service,
                        "tool {name:?} is left out of aggregated endpoints: prefixed, its name breaks the MCP tool-name rules (1-128 of A-Z a-z 0-9 _ - .)"
                    );
                }
                let prefixed = renamed.map(|n| {
                    let mut v = item.clone();
                    v[kind.key()] = Value::String(n);
                    v.to_string()
                });
                match kind {
                    ListKind::Tools => {
                        tools.insert(name.clone());
                    }
                    ListKind::Prompts => {
                        prompts.insert(name.clone());
                    }
                    _ => {}
                }
                out.push(Item {
                    name,
                    plain: item.to_string(),
                    prefixed,
                });
            }
            lists.insert(kind, out);
        }
        Catalog {
            fetched: Instant::now(),
            init,
            lists,
            tools,
            prompts,
        }
    }

    pub fn items(&self, kind: ListKind) -> &[Item] {
        self.lists.get(&kind).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether the service offers this tool, prompt, or resource (a listed
    /// URI, a listed template, or a URI one of its templates can produce).
    pub fn has(&self, kind: ItemKind, name: &str) -> bool {
        match kind {
            ItemKind::Tool => self.tools.contains(name),
            ItemKind::Prompt => self.prompts.contains(name),
            ItemKind::Resource => {
                self.items(ListKind::Resources)
                    .iter()
                    .any(|i| i.name == name)
                    || self
                        .items(ListKind::Templates)
                        .iter()
                        .any(|t| t.name == name || template_matches(&t.name, name))
            }
        }
    }

    /// A capability from the service's `initialize` answer.
    pub fn capability(&self, name: &str) -> Option<&Value> {
        self.init.pointer(&format!("/capabilities/{name}"))
    }
}

/// Whether an RFC 6570 URI template can expand to `uri`: its literal parts in
/// order, anything where its expressions are.
fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::with_capacity(template.len());
    let mut in_expression = false;
    for c in template.chars() {
        match (c, in_expression) {
            ('{', false) => {
                in_expression = true;
                pattern.push('*');
            }
            ('}', true) => in_expression = false,
            (_, true) => {}
            // A literal `*` or `?` would be a wildcard: the template is then
            // read a little more loosely, never more strictly.
            (c, false) => pattern.push(c),
        }
    }
    crate::policy::glob(&pattern, uri)
}

/// Per service (and person, where it matters).
pub type CatalogKey = (ServiceName, Option<UserId>);

/// The cache, shared by every session of the gateway.
pub struct Catalogs {
    ttl: Duration,
    entries: Mutex<HashMap<CatalogKey, Arc<Catalog>>>,
}

impl Catalogs {
    /// Entries kept at most; beyond it the oldest go first.
    const MAX_ENTRIES: usize = 10_000;

    pub fn new(ttl: Duration) -> Catalogs {
        Catalogs {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CatalogKey, Arc<Catalog>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh entry, if there is one.
    pub fn get(&self, key: &CatalogKey) -> Option<Arc<Catalog>> {
        self.lock()
            .get(key)
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .cloned()
    }

    pub fn put(&self, key: CatalogKey, catalog: Arc<Catalog>) {
        let mut map = self.lock();
        if map.len() >= Self::MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, c| c.fetched.elapsed() < ttl);
            if map.len() >= Self::MAX_ENTRIES
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, c)| c.fetched)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key, catalog);
    }

    pub fn invalidate(&self, key: &CatalogKey) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_expansions() {
        assert!(template_matches("file:///{path}", "file:///a/b.txt"));
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/7/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://other/7/data"
        ));
        assert!(template_matches(
            "db://{table}{?limit}",
            "db://users?limit=3"
        ));
    }
}
