//! Several kmsd nodes' trails side by side: a directory whose subdirectories each hold one
//! node's trail (each node writes its own chained, signed files; see the README's "High
//! availability"). `kmsd audit verify` checks each, `kmsd audit query` merges them by time.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chain::list_files;
use crate::query::{query, QueryFilter};

/// The trails in `dir`: `dir` itself when it holds trail files (name `""`), else each
/// subdirectory that does, by name. An error when there is none.
pub fn node_trails(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let holds_trail = |d: &Path| list_files(d).map(|f| !f.is_empty()).unwrap_or(false);
    if holds_trail(dir) {
        return Ok(vec![(String::new(), dir.to_owned())]);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut trails: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && holds_trail(p))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            Some((name, p))
        })
        .collect();
    trails.sort();
    if trails.is_empty() {
        return Err(format!(
            "{}: no audit trail here (no audit-*.jsonl files, nor subdirectories holding them)",
            dir.display()
        ));
    }
    Ok(trails)
}

/// Records of every trail in `dir` (see [`node_trails`]) matching `filter`, merged by
/// `eventTime` (records of one instant keep their trail's order, trails taken by name).
pub fn query_trails(dir: &Path, filter: &QueryFilter) -> Result<Vec<Value>, String> {
    let mut all = Vec::new();
    for (_, trail) in node_trails(dir)? {
        all.extend(query(&trail, filter)?);
    }
    all.sort_by(|a, b| {
        let t = |v: &Value| v["eventTime"].as_str().unwrap_or_default().to_owned();
        t(a).cmp(&t(b))
    });
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditWriter, Durability, SigningKey, WriterConfig};
    use std::sync::Arc;

    async fn trail(dir: &Path, node: &str, times: &[i64]) {
        let mut config = WriterConfig::new(Durability::Sync, 1 << 30, 3600);
        config.node_id = Some(node.into());
        let clock: Arc<dyn Fn() -> i64 + Send + Sync> = Arc::new(|| 1_767_225_600_000);
        let w =
            AuditWriter::start_with(dir, SigningKey::generate().unwrap(), config, clock).unwrap();
        for t in times {
            w.record(
                serde_json::json!({"eventName": "Encrypt", "eventTime": crate::event_time(*t)}),
            )
            .await
            .unwrap();
        }
        w.close().await;
    }

    #[tokio::test]
    async fn several_nodes_trails_are_found_and_merged_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_767_225_600_000;
        trail(
            &dir.path().join("node-b"),
            "node-b",
            &[t0 + 1000, t0 + 3000],
        )
        .await;
        trail(&dir.path().join("node-a"), "node-a", &[t0 + 2000]).await;
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let names: Vec<String> = node_trails(dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["node-a", "node-b"]);
        let merged = query_trails(dir.path(), &QueryFilter::default()).unwrap();
        let nodes: Vec<&str> = merged
            .iter()
            .map(|v| v["kmsdNodeId"].as_str().unwrap())
            .collect();
        assert_eq!(nodes, ["node-b", "node-a", "node-b"]);
        // One trail given directly is that trail alone.
        let one = node_trails(&dir.path().join("node-a")).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, "");
        assert!(node_trails(&dir.path().join("empty")).is_err());
    }
}
