//! `dure status`: the registry's view, as a table.

use crate::cli::StatusArgs;
use anyhow::Context;
use dure_contracts::registry::Catalog;
use std::process::ExitCode;
use std::time::Duration;

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .context("HTTP client")?;
    let registry = args.registry_url.trim_end_matches('/');
    let catalog: Catalog = client
        .get(format!("{registry}/v1/services"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| {
            format!("cannot reach the registry at {registry} (is `dure up` running?)")
        })?
        .json()
        .await
        .context("the registry's answer is not a catalog")?;
    if catalog.services.is_empty() {
        println!("The registry at {registry} knows no instances.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<22} {:<28} {:<8} LAST HEARTBEAT",
        "SERVICE", "INSTANCE", "ADDRESS", "HEALTH"
    );
    let mut all_healthy = true;
    for service in &catalog.services {
        for instance in &service.instances {
            // An instance inside another process (`dure up --single-process`)
            // cannot be asked from here; its current lease says its process
            // heartbeats, and that process checks its readiness.
            let health = if dure_chassis::local::name_of(&instance.address).is_some() {
                "leased"
            } else if client
                .get(format!("{}/readyz", instance.address))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                "ready"
            } else {
                all_healthy = false;
                "DOWN"
            };
            println!(
                "{:<14} {:<22} {:<28} {:<8} {}",
                service.name,
                instance.instance_id,
                instance.address,
                health,
                instance.last_heartbeat_at
            );
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
