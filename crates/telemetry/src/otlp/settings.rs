//! What the standard `OTEL_*` environment variables ask of trace export.

use super::sampler::Sampler;
use std::time::Duration;

/// Export settings, from the environment (defaults as the OpenTelemetry
/// specification gives them).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where export requests go: the traces endpoint itself.
    pub endpoint: String,
    /// OTLP/JSON rather than protobuf.
    pub json: bool,
    /// Extra request headers (a collector's credentials, say).
    pub headers: Vec<(String, String)>,
    /// How long one export request may take.
    pub timeout: Duration,
    pub sampler: Sampler,
    /// The longest a finished span waits before it is exported.
    pub schedule_delay: Duration,
    /// Spans finished beyond this many unexported ones are dropped.
    pub max_queue: usize,
    /// Spans per export request.
    pub max_batch: usize,
    /// How long shutdown waits for the last export.
    pub export_timeout: Duration,
    /// `OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, percent-decoded.
    pub resource_attributes: Vec<(String, String)>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads settings through `lookup` (a variable's non-empty value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let endpoint = match lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url.trim().to_owned(),
            None => {
                let base = lookup("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .ok_or("OTEL_EXPORTER_OTLP_ENDPOINT is not set")?;
                format!("{}/v1/traces", base.trim().trim_end_matches('/'))
            }
        };
        let variable = if lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        } else {
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        };
        if endpoint.starts_with("https://") {
            return Err(format!(
                "{variable}: https is not built in; export to a collector over http \
                 (e.g. an OpenTelemetry Collector beside the service)"
            ));
        }
        if !endpoint.starts_with("http://") || endpoint.len() <= "http://".len() {
            return Err(format!(
                "{variable}: expected an http:// URL, got {endpoint:?}"
            ));
        }
        let signal = |name: &str| {
            lookup(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .map(|v| (format!("OTEL_EXPORTER_OTLP_TRACES_{name}"), v))
                .or_else(|| {
                    lookup(&format!("OTEL_EXPORTER_OTLP_{name}"))
                        .map(|v| (format!("OTEL_EXPORTER_OTLP_{name}"), v))
                })
        };
        let json = match signal("PROTOCOL") {
            None => false,
            Some((variable, protocol)) => match protocol.trim() {
                "http/protobuf" => false,
                "http/json" => true,
                "grpc" => {
                    return Err(format!(
                        "{variable}: grpc is not built in; use http/protobuf or http/json"
                    ));
                }
                other => {
                    return Err(format!(
                        "{variable}: expected http/protobuf or http/json, got {other:?}"
                    ));
                }
            },
        };
        if let Some((variable, compression)) = signal("COMPRESSION")
            && compression.trim() != "none"
        {
            return Err(format!(
                "{variable}: only \"none\" is built in, got {compression:?}"
            ));
        }
        let mut headers = Vec::new();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(list) = lookup(name) {
                for (key, value) in key_values(name, &list)? {
                    headers.retain(|(k, _): &(String, String)| !k.eq_ignore_ascii_case(&key));
                    headers.push((key, value));
                }
            }
        }
        let millis = |name: &str, default: u64| -> Result<Duration, String> {
            lookup(name).map_or(Ok(Duration::from_millis(default)), |text| {
                text.trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| format!("{name}: expected milliseconds, got {text:?}"))
            })
        };
        let count = |name: &str, default: usize| -> Result<usize, String> {
            lookup(name).map_or(Ok(default), |text| {
                text.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}: expected a positive number, got {text:?}"))
            })
        };
        let timeout = match signal("TIMEOUT") {
            Some((name, _)) => millis(&name, 10_000)?,
            None => Duration::from_secs(10),
        };
        let sampler = Sampler::from_setting(
            lookup("OTEL_TRACES_SAMPLER").as_deref(),
            lookup("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        let max_queue = count("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?;
        let max_batch = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.min(max_queue);
        let resource_attributes = match lookup("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => key_values("OTEL_RESOURCE_ATTRIBUTES", &list)?,
            None => Vec::new(),
        };
        let service_name = lookup("OTEL_SERVICE_NAME")
            .map(|name| name.trim().to_owned())
            .or_else(|| {
                resource_attributes
                    .iter()
                    .find(|(key, _)| key == "service.name")
                    .map(|(_, value)| value.clone())
            });
        Ok(Self {
            endpoint,
            json,
            headers,
            timeout,
            sampler,
            schedule_delay: millis("OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
            max_queue,
            max_batch,
            export_timeout: millis("OTEL_BSP_EXPORT_TIMEOUT", 30_000)?,
            service_name,
            resource_attributes,
        })
    }
}

/// `key=value,key=value`, values percent-decoded (the W3C Baggage form both
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS` use).
fn key_values(variable: &str, list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .filter(|(key, _)| !key.trim().is_empty())
                .ok_or_else(|| {
                    format!("{variable}: expected key=value pairs separated by commas")
                })?;
            let value = percent_decode(value.trim()).ok_or_else(|| {
                format!(
                    "{variable}: a malformed %-escape in the value of {:?}",
                    key.trim()
                )
            })?;
            Ok((key.trim().to_owned(), value))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_specification() {
        let settings =
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(settings.endpoint, "http://collector:4318/v1/traces");
        assert!(!settings.json);
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.schedule_delay, Duration::from_secs(5));
        assert_eq!((settings.max_queue, settings.max_batch), (2048, 512));
        assert_eq!(
            settings.sampler,
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
        );
        assert_eq!(settings.service_name, None);
    }

    #[test]
    fn signal_specific_variables_win() {
        let settings = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Basic%20abc,x-team=a",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X-Team=b"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=staging,service.name=edge",
            ),
        ])
        .unwrap();
        assert_eq!(settings.endpoint, "http://traces:9999/custom");
        assert!(settings.json);
        assert_eq!(
            settings.headers,
            [
                ("authorization".to_owned(), "Basic abc".to_owned()),
                ("X-Team".to_owned(), "b".to_owned())
            ]
        );
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(settings.service_name.as_deref(), Some("edge"));
        assert_eq!(settings.resource_attributes[0].1, "staging");
    }

    #[test]
    fn malformed_settings_name_their_variable() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
            ("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "token=%zz"),
        ] {
            let err = settings(&[base, (variable, value)]).unwrap_err();
            assert!(err.starts_with(variable), "{variable}={value}: {err}");
        }
        let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector")]).unwrap_err();
        assert!(err.contains("https"), "{err}");
        let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert!(err.contains("http://"), "{err}");
    }
}
