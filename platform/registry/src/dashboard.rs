//! `GET /`: a small page of services and instances for people, in the spirit
//! of Eureka's dashboard.

use crate::Registry;
use axum::extract::State;
use axum::response::Html;
use std::fmt::Write;
use std::time::Duration;
use tokio::time::Instant;

pub async fn page(State(registry): State<Registry>) -> Html<String> {
    let (catalog, ages, index, ttl) = {
        let leases = registry.leases.lock().await;
        (
            leases.catalog(),
            leases.ages(Instant::now()),
            leases.index(),
            leases.ttl(),
        )
    };
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>dure registry</title>\
         <meta http-equiv=\"refresh\" content=\"5\"><style>\
         body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
         table{border-collapse:collapse;margin-bottom:1.5rem}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}\
         th{background:#f4f4f4}.muted{color:#777}</style></head><body><h1>dure registry</h1>",
    );
    let instance_count: usize = catalog.services.iter().map(|s| s.instances.len()).sum();
    let _ = write!(
        html,
        "<p class=\"muted\">{} services, {} instances · lease {}s · index {}</p>",
        catalog.services.len(),
        instance_count,
        ttl.as_secs(),
        index
    );
    if catalog.services.is_empty() {
        html.push_str("<p>No instances are registered.</p>");
    }
    for service in &catalog.services {
        let _ = write!(
            html,
            "<h2>{} <span class=\"muted\">({})</span></h2><table><tr><th>instance</th><th>address</th>\
             <th>version</th><th>registered</th><th>last heartbeat</th><th>routes</th></tr>",
            escape(&service.name),
            service.instances.len()
        );
        for instance in &service.instances {
            let age = ages.get(&instance.instance_id).copied().unwrap_or_default();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td><td>{}</td></tr>",
                escape(&instance.instance_id),
                escape(&instance.address),
                escape(&instance.version),
                escape(&instance.registered_at),
                human(age),
                escape(&instance.routes().join(" ")),
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    Html(html)
}

fn human(age: Duration) -> String {
    if age.as_secs() < 1 {
        format!("{}ms", age.as_millis())
    } else {
        format!("{}s", age.as_secs())
    }
}

/// Registrations are written by whoever can reach the registry: escape all.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
