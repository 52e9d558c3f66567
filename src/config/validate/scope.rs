//! Where in the file a check is looking, so it reports a problem by key rather than by building
//! the whole path: `adapter.at("output").at("stream").push(..)` reports at
//! `adapters[2].output.stream` when `adapter` is the scope of `adapters[2]`.

use std::fmt::Display;

use crate::config::Problem;

/// Every problem found so far, in the order found.
#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    /// A scope at `path` (a top-level key, or a path such as `adapters[2]`).
    pub(super) fn at(&mut self, path: impl Into<String>) -> Scope<'_> {
        Scope {
            problems: self,
            path: path.into(),
        }
    }

    /// Reports `message` at `path`, for the checks that still build their paths themselves.
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Display) {
        self.0.push(Problem::new(path, message.to_string()));
    }

    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

/// A place in the config that problems are reported at.
pub(super) struct Scope<'a> {
    problems: &'a mut Problems,
    path: String,
}

impl Scope<'_> {
    /// The scope of `key` below this one (`key` may itself be dotted: `tls.ca`).
    pub(super) fn at(&mut self, key: &str) -> Scope<'_> {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        Scope {
            problems: self.problems,
            path,
        }
    }

    /// The scope of entry `index` of this list.
    pub(super) fn index(&mut self, index: usize) -> Scope<'_> {
        Scope {
            path: format!("{}[{index}]", self.path),
            problems: self.problems,
        }
    }

    /// Reports `message` at this scope's path.
    pub(super) fn push(&mut self, message: impl Display) {
        self.problems.push(self.path.clone(), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_build_the_paths_problems_are_reported_at() {
        let mut problems = Problems::default();
        let mut adapter = problems.at("adapters[2]");
        adapter.at("output").at("stream").push("is empty");
        adapter.at("subjects").index(1).push("has an empty token");
        problems.at("").at("state_dir").push("is empty");
        let paths: Vec<String> = problems
            .into_vec()
            .into_iter()
            .map(|problem| problem.to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "adapters[2].output.stream: is empty",
                "adapters[2].subjects[1]: has an empty token",
                "state_dir: is empty"
            ]
        );
    }
}
