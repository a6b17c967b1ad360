//! Which traces are recorded: the standard samplers `OTEL_TRACES_SAMPLER`
//! names.

use super::context::SpanContext;

#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Samples a trace when its id falls under this share of the id space
    /// (the SDKs' `traceidratio`: the same trace is sampled everywhere).
    TraceIdRatio(f64),
    /// Follows the parent's decision; a root span asks the inner sampler.
    ParentBased(Box<Sampler>),
}

impl Sampler {
    /// Whether a span of trace `trace_id` under `parent` is recorded.
    pub fn sample(&self, parent: Option<&SpanContext>, trace_id: u128) -> bool {
        match self {
            Self::AlwaysOn => true,
            Self::AlwaysOff => false,
            Self::TraceIdRatio(ratio) => {
                // As the OpenTelemetry SDKs do: the low 64 bits, less one.
                let bound = (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64;
                ((trace_id as u64) >> 1) < bound
            }
            Self::ParentBased(root) => match parent {
                Some(parent) => parent.sampled,
                None => root.sample(None, trace_id),
            },
        }
    }

    /// From `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub fn from_setting(name: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim) {
                None | Some("") => Ok(1.0),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!(
                            "OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1, got {text:?}"
                        )
                    }),
            }
        };
        Ok(
            match name.map(str::trim).unwrap_or("parentbased_always_on") {
                "" | "parentbased_always_on" => Self::ParentBased(Box::new(Self::AlwaysOn)),
                "always_on" => Self::AlwaysOn,
                "always_off" => Self::AlwaysOff,
                "traceidratio" => Self::TraceIdRatio(ratio()?),
                "parentbased_always_off" => Self::ParentBased(Box::new(Self::AlwaysOff)),
                "parentbased_traceidratio" => {
                    Self::ParentBased(Box::new(Self::TraceIdRatio(ratio()?)))
                }
                other => {
                    return Err(format!(
                        "OTEL_TRACES_SAMPLER: {other:?} is not one of always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio"
                    ));
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(sampled: bool) -> SpanContext {
        SpanContext {
            trace_id: 7,
            span_id: 9,
            sampled,
            remote: true,
        }
    }

    #[test]
    fn parent_based_follows_the_parent_and_asks_the_root_sampler_otherwise() {
        let sampler = Sampler::from_setting(None, None).unwrap();
        assert!(sampler.sample(None, 1));
        assert!(!sampler.sample(Some(&parent(false)), 1));
        let off = Sampler::from_setting(Some("parentbased_always_off"), None).unwrap();
        assert!(!off.sample(None, 1));
        assert!(off.sample(Some(&parent(true)), 1));
    }

    #[test]
    fn a_ratio_samples_about_that_share_of_random_traces() {
        let sampler = Sampler::from_setting(Some("traceidratio"), Some("0.1")).unwrap();
        let sampled = (0..20_000)
            .filter(|_| sampler.sample(None, super::super::context::new_trace_id()))
            .count();
        assert!((1_500..2_500).contains(&sampled), "{sampled} of 20000");
        let none = Sampler::from_setting(Some("traceidratio"), Some("0")).unwrap();
        assert!(!none.sample(None, u128::MAX));
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err = Sampler::from_setting(Some("sometimes"), None).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER"), "{err}");
        let err = Sampler::from_setting(Some("traceidratio"), Some("2")).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    }
}
