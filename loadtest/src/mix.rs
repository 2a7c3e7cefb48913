//! The operations a simulated client performs, named as the contract names them, and the weights
//! that mix them into sessions.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use rand::RngExt;
use serde::Serialize;

/// An operation of the contract: the core's own list of routes.
pub use qbill_core::routes::Kind as Op;

/// What a simulated household does, in the order of the figures' columns.
pub const OPS: [Op; 4] = [Op::Auth, Op::Utils, Op::Histories, Op::Payments];

/// The column of `op` among [`OPS`]; load tests send no other operation.
pub fn slot(op: Op) -> usize {
    OPS.iter()
        .position(|o| *o == op)
        .unwrap_or_else(|| panic!("{op} is not an operation of the load test"))
}

/// The household operation named `word`.
pub fn parse_op(word: &str) -> Option<Op> {
    OPS.into_iter().find(|op| op.as_str() == word)
}

/// Relative weights of the operations, written `auth=1,utils=4,payments=2,histories=2`.
#[derive(Debug, Clone, Serialize)]
pub struct Mix {
    weights: [u32; OPS.len()],
}

impl Mix {
    /// Picks an operation with probability proportional to its weight.
    pub fn choose(&self, rng: &mut impl RngExt) -> Op {
        let total: u32 = self.weights.iter().sum();
        let mut ticket = rng.random_range(0..total);
        for op in OPS {
            let weight = self.weights[slot(op)];
            if ticket < weight {
                return op;
            }
            ticket -= weight;
        }
        unreachable!("the ticket is below the sum of the weights")
    }

    pub fn weight(&self, op: Op) -> u32 {
        self.weights[slot(op)]
    }

    /// The share of requests that are `op`.
    pub fn share(&self, op: Op) -> f64 {
        f64::from(self.weight(op)) / f64::from(self.weights.iter().sum::<u32>())
    }
}

impl FromStr for Mix {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut weights = [0u32; OPS.len()];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("{part:?}: write an operation as name=weight"))?;
            let op = parse_op(name.trim()).with_context(|| {
                format!("{name:?} is not an operation (auth, utils, histories, payments)")
            })?;
            weights[slot(op)] = weight
                .trim()
                .parse()
                .with_context(|| format!("{weight:?} is not a whole number"))?;
        }
        if weights.iter().all(|w| *w == 0) {
            bail!("the mix needs at least one operation with a weight above 0");
        }
        Ok(Self { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = OPS
            .into_iter()
            .filter(|op| self.weight(*op) > 0)
            .map(|op| format!("{op}={}", self.weight(op)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_and_prints_the_same_way() {
        let mix: Mix = "auth=1, utils=4,payments=2,histories=2".parse().unwrap();
        assert_eq!(mix.to_string(), "auth=1,utils=4,histories=2,payments=2");
        assert!((mix.share(Op::Utils) - 4.0 / 9.0).abs() < 1e-9);
    }

    #[test]
    fn a_mix_refuses_unknown_operations_and_all_zero_weights() {
        assert!("login=1".parse::<Mix>().is_err());
        assert!("utils=0".parse::<Mix>().is_err());
        assert!("utils=x".parse::<Mix>().is_err());
    }

    #[test]
    fn choosing_follows_the_weights_and_never_picks_a_zero_weight() {
        let mix: Mix = "utils=3,payments=1".parse().unwrap();
        let mut rng = rand::rng();
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[slot(mix.choose(&mut rng))] += 1;
        }
        assert_eq!(counts[slot(Op::Auth)], 0);
        assert_eq!(counts[slot(Op::Histories)], 0);
        let share = f64::from(counts[slot(Op::Utils)]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "utils share {share}");
    }
}
