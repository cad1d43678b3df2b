//! `proxy.aggregate`: the aggregated endpoints (`/mcp`, `/<group>/mcp`), the
//! services each one serves, and the delimiter of prefixed names, validated
//! with every problem reported at its JSON path.

use std::time::Duration;

use super::{Problem, Service, ServiceName, types};

/// The aggregated endpoints, validated.
#[derive(Debug, Clone)]
pub struct AggregateSettings {
    /// Each endpoint: its name (`mcp` for the root one at `/mcp`, else the
    /// group served at `/<name>/mcp`) and its services.
    pub endpoints: Vec<(ServiceName, Vec<ServiceName>)>,
    pub delimiter: String,
    pub cache_ttl: Duration,
    pub page_size: usize,
}

impl AggregateSettings {
    /// The internal name of the endpoint served at `/mcp`, `/sse` and `/message`.
    pub const ROOT: &'static str = "mcp";
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(600);
    pub const DEFAULT_PAGE_SIZE: usize = 1000;

    pub fn none() -> AggregateSettings {
        AggregateSettings {
            endpoints: Vec::new(),
            delimiter: "_".into(),
            cache_ttl: Self::DEFAULT_CACHE_TTL,
            page_size: Self::DEFAULT_PAGE_SIZE,
        }
    }
}

/// `proxy.aggregate`: the endpoints, their services, and a delimiter with
/// which no two services' names can collide.
pub(super) fn settings(
    raw: Option<types::AggregateConfig>,
    services: &[Service],
    problems: &mut Vec<Problem>,
) -> AggregateSettings {
    let raw = raw.unwrap_or_default();
    let mut out = AggregateSettings::none();
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    if let Some(d) = &raw.delimiter {
        let ok = (1..=3).contains(&d.len())
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            out.delimiter = d.clone();
        } else {
            problem(
                "proxy.aggregate.delimiter".into(),
                format!("{d:?} must be 1-3 of A-Z a-z 0-9 _ - . (tool names allow nothing else)"),
            );
        }
    }
    if let Some(t) = raw.cache_ttl {
        out.cache_ttl = t.0;
    }
    if let Some(n) = raw.page_size {
        if n == 0 {
            problem(
                "proxy.aggregate.pageSize".into(),
                "must be at least 1".into(),
            );
        } else {
            out.page_size = n;
        }
    }
    let known = |name: &str| services.iter().find(|s| s.name.as_str() == name);
    let pick = |path: &str, list: Option<&Vec<String>>, problem: &mut dyn FnMut(String, String)| {
        let Some(list) = list else {
            return services.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        };
        let mut chosen = Vec::new();
        for (i, n) in list.iter().enumerate() {
            match known(n) {
                Some(s) if !chosen.contains(&s.name) => chosen.push(s.name.clone()),
                Some(_) => {}
                None => problem(
                    format!("{path}[{i}]"),
                    format!("{n:?} is not a configured service"),
                ),
            }
        }
        chosen
    };
    let mut endpoints = Vec::new();
    if raw.enabled != Some(false) {
        let list = pick(
            "proxy.aggregate.services",
            raw.services.as_ref(),
            &mut problem,
        );
        // `path`: `/mcp` (with `/sse`, `/message`), or `/<name>/mcp` (with
        // `/<name>/sse`), served like a group of that name.
        match raw.path.as_deref().map(str::trim) {
            None | Some("/mcp") => endpoints.push((ServiceName::root(), list)),
            Some(p) => {
                let name = p
                    .strip_prefix('/')
                    .and_then(|r| r.strip_suffix("/mcp"))
                    .filter(|n| !n.contains('/'));
                match name.map(ServiceName::parse) {
                    Some(Ok(_))
                        if name
                            .is_some_and(|n| known(n).is_some() || raw.groups.contains_key(n)) =>
                    {
                        problem(
                            "proxy.aggregate.path".into(),
                            format!(
                                "{p:?} is already a service's or a group's path; choose another"
                            ),
                        )
                    }
                    Some(Ok(n)) => endpoints.push((n, list)),
                    Some(Err(m)) => problem(
                        "proxy.aggregate.path".into(),
                        m.to_string().replace("service name", "the path's name"),
                    ),
                    None => problem(
                        "proxy.aggregate.path".into(),
                        format!("{p:?} must be \"/mcp\" or \"/<name>/mcp\" (e.g. \"/all/mcp\")"),
                    ),
                }
            }
        }
    }
    for (group, g) in &raw.groups {
        let path = format!("proxy.aggregate.groups.{group}");
        let list = pick(&format!("{path}.services"), Some(&g.services), &mut problem);
        match ServiceName::parse(group) {
            Ok(_) if known(group).is_some() => problem(
                path,
                format!(
                    "{group:?} is also a service's name; a group needs a path of its own (/{group}/mcp)"
                ),
            ),
            Ok(name) => endpoints.push((name, list)),
            Err(m) => problem(path, m.to_string().replace("service name", "group name")),
        }
    }
    // `a` + `_` + `b_c` and `a_b` + `_` + `c` would both read `a_b_c` (and with
    // `__`, `x` + `__` + `_y` and `x_` + `__` + `y` both read `x___y`): refuse
    // any pair where one name with the delimiter starts the other's, so no
    // two renamed names can ever be equal.
    for (endpoint, list) in &endpoints {
        for a in list {
            for b in list {
                let d = &out.delimiter;
                if a != b && format!("{b}{d}").starts_with(&format!("{a}{d}")) {
                    problem(
                        "proxy.aggregate.delimiter".into(),
                        format!(
                            "services {a:?} and {b:?} share the endpoint /{}mcp, and with the delimiter {d:?} their tool names could collide ({a}{d}... and {b}{d}...); choose another delimiter (e.g. \".\" or \"-\") or rename one",
                            if endpoint.as_str() == AggregateSettings::ROOT {
                                String::new()
                            } else {
                                format!("{endpoint}/")
                            },
                        ),
                    );
                }
            }
        }
    }
    out.endpoints = endpoints;
    out
}
