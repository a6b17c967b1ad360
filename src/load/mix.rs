//! The operations a run sends and in which proportions.

use rand::Rng;
use std::fmt;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /api/postings?limit=10`
    List,
    /// `GET /api/postings/{id}`
    Read,
    /// `POST /api/postings/{id}/comments`, signed in
    Comment,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::List, Op::Read, Op::Comment];

    pub fn name(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Read => "read",
            Op::Comment => "comment",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 3],
}

impl Mix {
    /// One of `--mix`: `dsb`, `read` or `write` (clap checks the name).
    pub fn named(name: &str) -> Self {
        let weights = match name {
            "read" => [2, 1, 0],
            "write" => [0, 0, 1],
            // DeathStarBench's social network mix, on our routes.
            _ => [60, 30, 10],
        };
        Self { weights }
    }

    /// `list=50,read=30,comment=20`; operations left out weigh 0.
    pub fn parse_weights(text: &str) -> anyhow::Result<Self> {
        let mut weights = [0u32; 3];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--weights: `{part}` is not OP=N"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    anyhow::anyhow!("--weights: unknown operation `{name}` (list, read, comment)")
                })?;
            weights[op.index()] = weight.trim().parse().map_err(|_| {
                anyhow::anyhow!("--weights: the weight of {name} must be a whole number")
            })?;
        }
        anyhow::ensure!(
            weights.iter().any(|w| *w > 0),
            "--weights: give at least one operation a weight above 0"
        );
        Ok(Self { weights })
    }

    /// A random operation, with the mix's probabilities.
    pub fn pick(&self, rng: &mut impl Rng) -> Op {
        let total: u32 = self.weights.iter().sum();
        let mut ticket = rng.gen_range(0..total);
        for op in Op::ALL {
            let weight = self.weights[op.index()];
            if ticket < weight {
                return op;
            }
            ticket -= weight;
        }
        Op::List
    }

    /// Each operation's share, from 0 to 1.
    pub fn shares(&self) -> [(Op, f64); 3] {
        let total = f64::from(self.weights.iter().sum::<u32>());
        Op::ALL.map(|op| (op, f64::from(self.weights[op.index()]) / total))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .shares()
            .iter()
            .filter(|(_, share)| *share > 0.0)
            .map(|(op, share)| format!("{:.0} % {}", share * 100.0, op.name()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_reject() {
        let mix = Mix::parse_weights("list=1, comment=3").unwrap();
        assert_eq!(mix.weights, [1, 0, 3]);
        assert!(Mix::parse_weights("list=0").is_err());
        assert!(Mix::parse_weights("delete=1").is_err());
        assert!(Mix::parse_weights("list").is_err());
        assert!(Mix::parse_weights("list=-1").is_err());
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = Mix::named("dsb");
        let mut rng = rand::thread_rng();
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        // 60/30/10 within a percent point.
        for (count, expected) in counts.iter().zip([60_000, 30_000, 10_000]) {
            assert!(count.abs_diff(expected) < 1_000, "{counts:?}");
        }
        assert_eq!(Mix::named("write").pick(&mut rng), Op::Comment);
    }
}
