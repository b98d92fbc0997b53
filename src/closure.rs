//! Closure graphs, as Nix exports them, and the two ways of splitting them
//! into layers: upstream's popularity order, and a size-aware grouping.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;

/// One store path of a closure, as `exportReferencesGraph` writes it into
/// `.attrs.json` (other fields, such as `closureSize`, are ignored).
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
    /// Hash of the path's NAR serialisation, as Nix prints it
    /// (`sha256:<nix32>`).
    #[serde(default, rename = "narHash")]
    pub nar_hash: Option<String>,
    /// The content-address assertion of a content-addressed path.
    #[serde(default)]
    pub ca: Option<String>,
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

/// How the store paths of a layer derivation are split into layers (the
/// `layering` argument of the Nix functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layering {
    /// Upstream's: the `maxLayers - 1` most popular store paths get a layer
    /// each, the others share the last one ([`split_for_layers`]).
    #[default]
    Popularity,
    /// The largest store paths get a layer each, with the paths only they
    /// use; the dependencies they share are grouped by the set of large
    /// paths that use them ([`size_groups`]).
    Size,
}

/// Splits `kept`, store paths of `graph`, into at most `max_layers` layers
/// (0: no limit) so that the largest paths are shared between images.
///
/// This is the idea of nixpkgs' `auto-layer`, written from its description:
///
/// * Store paths are ranked by NAR size, largest first (ties by path). The
///   first `k` are *large*.
/// * A large path's layer holds it and every path it *dominates*: paths
///   whose referrers all are that large path or paths it dominates, so
///   that any image with the large path has them too.
/// * Every other path that some large paths depend on goes to the layer of
///   that set of large paths: one layer per set, holding their shared
///   dependencies.
/// * What no large path depends on (the application, its config, small
///   leaves) shares the last layer.
///
/// `k` grows from 0 while the layers fit in `max_layers`. Layers come
/// bottom first: shared dependencies (used by more large paths first), the
/// large paths (largest first), the rest. Each group keeps the order of
/// `kept` and holds indices into it. Paths of `graph` that are not in
/// `kept` (already in a parent layer, ignored) are never placed, but their
/// references still count.
pub fn size_groups(graph: &[ClosureEntry], kept: &[PathBuf], max_layers: usize) -> Vec<Vec<usize>> {
    let sized = SizedGraph::new(graph, kept);
    let mut ranked: Vec<usize> = (0..kept.len()).collect();
    ranked.sort_by(|&a, &b| {
        sized.size[sized.kept[b]]
            .cmp(&sized.size[sized.kept[a]])
            .then_with(|| kept[a].cmp(&kept[b]))
    });
    let plan = if max_layers == 0 {
        sized.plan(&ranked)
    } else {
        let mut best = sized.plan(&[]);
        for k in 1..=ranked.len() {
            let plan = sized.plan(&ranked[..k]);
            if plan.len() > max_layers {
                break;
            }
            best = plan;
        }
        best
    };
    plan.into_values().collect()
}

/// Where a path of [`size_groups`] goes; the order is the layer order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SizeLayer {
    /// Shared by a set of large paths: more users first, then by their
    /// ranks (the key is the negated count, then the sorted ranks).
    Shared(isize, Vec<usize>),
    /// The large path of this rank, with what it dominates.
    Large(usize),
    /// Used by no large path.
    Rest,
}

/// The closure graph for [`size_groups`], with nodes in an order where
/// every referrer comes before what it refers to.
struct SizedGraph {
    /// Referrers of each node, without self references.
    referrers: Vec<Vec<usize>>,
    /// NAR size of each node.
    size: Vec<u64>,
    /// Nodes, referrers first.
    topological: Vec<usize>,
    /// The node of each kept path.
    kept: Vec<usize>,
}

impl SizedGraph {
    fn new(graph: &[ClosureEntry], kept: &[PathBuf]) -> SizedGraph {
        let mut nodes = Nodes::default();
        let mut size = Vec::new();
        for entry in graph {
            let from = nodes.id(&entry.path);
            size.resize(nodes.paths.len(), 0);
            size[from] = entry.nar_size;
            for reference in &entry.references {
                let to = nodes.id(reference);
                if from != to && !nodes.referees[from].contains(&to) {
                    nodes.referees[from].push(to);
                    nodes.referrers[to] += 1;
                }
            }
        }
        let kept: Vec<usize> = kept.iter().map(|path| nodes.id(path)).collect();
        size.resize(nodes.paths.len(), 0);
        let count = nodes.paths.len();
        let mut referrers = vec![Vec::new(); count];
        for (from, tos) in nodes.referees.iter().enumerate() {
            for &to in tos {
                referrers[to].push(from);
            }
        }
        let mut remaining = nodes.referrers.clone();
        let mut ready: Vec<usize> = (0..count).filter(|&n| remaining[n] == 0).collect();
        let mut topological = Vec::with_capacity(count);
        while let Some(node) = ready.pop() {
            topological.push(node);
            for &to in &nodes.referees[node] {
                remaining[to] -= 1;
                if remaining[to] == 0 {
                    ready.push(to);
                }
            }
        }
        SizedGraph {
            referrers,
            size,
            topological,
            kept,
        }
    }

    /// The layers when the kept paths at `large` (indices into `kept`, by
    /// rank) are large: the kept indices of each layer, in layer order.
    fn plan(&self, large: &[usize]) -> BTreeMap<SizeLayer, Vec<usize>> {
        let count = self.size.len();
        let words = large.len().div_ceil(64).max(1);
        let mut rank = vec![None; count];
        for (r, &index) in large.iter().enumerate() {
            rank[self.kept[index]] = Some(r);
        }
        // The large paths each node is reachable from (not counting itself),
        // and the large path that owns it: itself, or the one dominating it.
        let mut reach = vec![0u64; count * words];
        let mut owner: Vec<Option<usize>> = vec![None; count];
        for &node in &self.topological {
            let mut bits = vec![0u64; words];
            let mut dominator: Option<Option<usize>> = None;
            for &referrer in &self.referrers[node] {
                for (w, bit) in bits.iter_mut().enumerate() {
                    *bit |= reach[referrer * words + w];
                }
                if let Some(r) = rank[referrer] {
                    bits[r / 64] |= 1 << (r % 64);
                }
                dominator = match dominator {
                    None => Some(owner[referrer]),
                    Some(o) if o == owner[referrer] => Some(o),
                    Some(_) => Some(None),
                };
            }
            reach[node * words..(node + 1) * words].copy_from_slice(&bits);
            owner[node] = rank[node].or(dominator.flatten());
        }
        let mut layers: BTreeMap<SizeLayer, Vec<usize>> = BTreeMap::new();
        for (index, &node) in self.kept.iter().enumerate() {
            let layer = match owner[node] {
                Some(r) => SizeLayer::Large(r),
                None => {
                    let bits = &reach[node * words..(node + 1) * words];
                    let users: Vec<usize> = (0..large.len())
                        .filter(|r| bits[r / 64] & (1 << (r % 64)) != 0)
                        .collect();
                    if users.is_empty() {
                        SizeLayer::Rest
                    } else {
                        SizeLayer::Shared(-(users.len() as isize), users)
                    }
                }
            };
            layers.entry(layer).or_default().push(index);
        }
        layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, references: &[&str]) -> ClosureEntry {
        ClosureEntry {
            path: path.into(),
            references: references.iter().map(PathBuf::from).collect(),
            nar_size: 0,
            nar_hash: None,
            ca: None,
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

    fn sized(path: &str, size: u64, references: &[&str]) -> ClosureEntry {
        ClosureEntry {
            nar_size: size,
            ..entry(path, references)
        }
    }

    /// app → big1, big2; big1 → libc, libx; big2 → libc. Sizes: big1 100,
    /// big2 80, libc 50, app 10, libx 5.
    fn sized_graph() -> Vec<ClosureEntry> {
        vec![
            sized("app", 10, &["big1", "big2", "app"]),
            sized("big1", 100, &["libc", "libx"]),
            sized("big2", 80, &["libc"]),
            sized("libc", 50, &[]),
            sized("libx", 5, &[]),
        ]
    }

    fn size_layers(graph: &[ClosureEntry], kept: &[&str], max: usize) -> Vec<Vec<String>> {
        let kept: Vec<PathBuf> = kept.iter().map(PathBuf::from).collect();
        size_groups(graph, &kept, max)
            .into_iter()
            .map(|group| {
                group
                    .into_iter()
                    .map(|i| kept[i].display().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn size_layering_table() {
        let graph = sized_graph();
        let all = ["app", "big1", "big2", "libc", "libx"];
        let cases: &[(usize, &[&[&str]])] = &[
            (1, &[&["app", "big1", "big2", "libc", "libx"]]),
            // big1 alone would need 3 layers: big1+libx, libc (used by
            // big1 only, but also by big2), the rest.
            (2, &[&["app", "big1", "big2", "libc", "libx"]]),
            (3, &[&["libc"], &["big1", "libx"], &["app", "big2"]]),
            (4, &[&["big1", "libx"], &["big2"], &["libc"], &["app"]]),
            (0, &[&["big1"], &["big2"], &["libc"], &["app"], &["libx"]]),
        ];
        for &(max, expected) in cases {
            assert_eq!(size_layers(&graph, &all, max), expected, "maxLayers {max}");
        }
    }

    #[test]
    fn size_layering_places_only_kept_paths_but_follows_all_references() {
        let graph = sized_graph();
        // big2 and libc come from a parent layer: libx still belongs to big1.
        assert_eq!(
            size_layers(&graph, &["app", "big1", "libx"], 2),
            [vec!["big1", "libx"], vec!["app"]]
        );
        assert!(size_layers(&graph, &[], 3).is_empty());
    }

    #[test]
    fn size_layering_is_a_partition_within_the_limit() {
        // A wider graph: 30 packages over 6 libraries of growing sizes.
        let mut graph = Vec::new();
        let libs: Vec<String> = (0..6).map(|i| format!("lib{i}")).collect();
        let mut root_refs = Vec::new();
        for p in 0..30 {
            let name = format!("pkg{p:02}");
            let refs: Vec<&str> = libs
                .iter()
                .enumerate()
                .filter(|(i, _)| p % (i + 2) == 0)
                .map(|(_, l)| l.as_str())
                .collect();
            graph.push(sized(&name, 1000 + p as u64 * 37, &refs));
            root_refs.push(name);
        }
        for (i, lib) in libs.iter().enumerate() {
            graph.push(sized(lib, 500 * (i as u64 + 1), &[]));
        }
        let refs: Vec<&str> = root_refs.iter().map(String::as_str).collect();
        graph.push(sized("root", 1, &refs));
        let kept: Vec<&str> = graph.iter().map(|e| e.path.to_str().unwrap()).collect();
        for max in [1, 2, 5, 10, 40] {
            let layers = size_layers(&graph, &kept, max);
            assert!(
                layers.len() <= max,
                "maxLayers {max}: {} layers",
                layers.len()
            );
            let mut placed: Vec<&String> = layers.iter().flatten().collect();
            placed.sort();
            placed.dedup();
            assert_eq!(placed.len(), kept.len(), "maxLayers {max}: {layers:?}");
        }
        assert_eq!(size_layers(&graph, &kept, 40).len(), 37);
    }
}
