//! Closure graphs, as Nix exports them, and upstream's popularity order.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One store path of a closure, as `exportReferencesGraph` writes it into
/// `.attrs.json` (other fields, such as `narHash`, are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClosureEntry {
    /// The store path.
    pub path: PathBuf,
    /// The store paths it refers to, possibly including itself.
    #[serde(default)]
    pub references: Vec<PathBuf>,
    /// Size of the path's NAR serialisation.
    #[serde(default, rename = "narSize")]
    pub nar_size: u64,
}

/// The store paths of `graph`, most popular first, exactly as upstream
/// orders them.
///
/// Node ids are given in order of first appearance while reading the graph
/// (each entry's path, then its references). The popularity of a node is 1
/// plus the popularity of every node referring to it, which counts the
/// paths through the reference graph that end at it. Ties go to the higher
/// id. Self references are ignored; Nix closures are acyclic without them.
pub fn popularity_order(graph: &[ClosureEntry]) -> Vec<PathBuf> {
    let mut nodes = Nodes::default();
    for entry in graph {
        let from = nodes.id(&entry.path);
        for reference in &entry.references {
            let to = nodes.id(reference);
            if from != to && !nodes.referees[from].contains(&to) {
                nodes.referees[from].push(to);
                nodes.referrers[to] += 1;
            }
        }
    }
    let Nodes {
        paths,
        referees,
        referrers: mut referrers_count,
        ..
    } = nodes;

    // Kahn's algorithm: a node's score is final once all referrers are done.
    let mut score = vec![1u64; paths.len()];
    let mut ready: Vec<usize> = (0..paths.len())
        .filter(|&n| referrers_count[n] == 0)
        .collect();
    while let Some(node) = ready.pop() {
        for &to in &referees[node] {
            score[to] = score[to].saturating_add(score[node]);
            referrers_count[to] -= 1;
            if referrers_count[to] == 0 {
                ready.push(to);
            }
        }
    }

    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by(|&a, &b| score[b].cmp(&score[a]).then(b.cmp(&a)));
    order.into_iter().map(|n| paths[n].clone()).collect()
}

/// The reference graph with upstream's node numbering.
#[derive(Default)]
struct Nodes<'a> {
    ids: HashMap<&'a PathBuf, usize>,
    paths: Vec<&'a PathBuf>,
    /// Edges from referrer to referee, without duplicates.
    referees: Vec<Vec<usize>>,
    /// Number of distinct referrers of each node.
    referrers: Vec<usize>,
}

impl<'a> Nodes<'a> {
    fn id(&mut self, path: &'a PathBuf) -> usize {
        if let Some(&id) = self.ids.get(path) {
            return id;
        }
        self.ids.insert(path, self.paths.len());
        self.paths.push(path);
        self.referees.push(Vec::new());
        self.referrers.push(0);
        self.paths.len() - 1
    }
}

/// Splits `items` (most popular first) into at most `max_layers` groups:
/// one item per group for the first `max_layers - 1` groups, the rest in
/// the last one. Zero means one group per item.
pub fn split_for_layers<T>(items: Vec<T>, max_layers: usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        if max_layers == 0 || groups.len() < max_layers {
            groups.push(vec![item]);
        } else {
            groups
                .last_mut()
                .expect("max_layers > 0 and groups is full")
                .push(item);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, references: &[&str]) -> ClosureEntry {
        ClosureEntry {
            path: path.into(),
            references: references.iter().map(PathBuf::from).collect(),
            nar_size: 0,
        }
    }

    /// Upstream's `TestPopularities`: A→B,G; B→C,E; C→D,E; D→F; E→F.
    #[test]
    fn upstream_seven_node_example() {
        let graph = [
            entry("A", &["B", "G"]),
            entry("B", &["C", "E"]),
            entry("C", &["D", "E"]),
            entry("D", &["F"]),
            entry("E", &["F"]),
            entry("F", &[]),
            entry("G", &[]),
        ];
        let order: Vec<_> = popularity_order(&graph)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(order, ["F", "E", "D", "C", "G", "B", "A"]);
    }

    #[test]
    fn self_references_are_ignored() {
        let graph = [entry("A", &["A", "B"]), entry("B", &["B"])];
        let order: Vec<_> = popularity_order(&graph)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(order, ["B", "A"]);
    }

    #[test]
    fn split_table() {
        let cases: &[(usize, usize, &[usize])] = &[
            (5, 1, &[5]),
            (5, 3, &[1, 1, 3]),
            (2, 3, &[1, 1]),
            (3, 0, &[1, 1, 1]),
            (0, 2, &[]),
        ];
        for &(items, max, sizes) in cases {
            let groups = split_for_layers((0..items).collect(), max);
            let got: Vec<usize> = groups.iter().map(Vec::len).collect();
            assert_eq!(got, sizes, "{items} items, maxLayers {max}");
        }
    }
}
