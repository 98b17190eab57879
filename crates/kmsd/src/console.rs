//! The web console: the static single-page app in `console/` (built into `console-dist/`,
//! committed, so building kmsd needs no npm), served at `/console/` on the main listener.
//!
//! Only unauthenticated GETs of these fixed files are served here; the app itself calls kmsd's
//! KMS API with SigV4 from the browser, so access control and audit apply to it as to any SDK.
//! Every answer carries a strict Content-Security-Policy: scripts, styles and connections to
//! kmsd's own origin only, no inline script, no framing.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::Response;

/// Where the console is served.
pub const PATH: &str = "/console/";

/// The Content-Security-Policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: path under `/console/`, content type, bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The built bundle (fixed file names: `console/vite.config.ts` sets them). A test checks that
/// this table lists exactly the files in `console-dist/`.
const ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../console-dist/index.html"),
    },
    Asset {
        path: "assets/console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../console-dist/assets/console.js"),
    },
    Asset {
        path: "assets/console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../console-dist/assets/console.css"),
    },
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../console-dist/favicon.svg"),
    },
];

fn with_security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    // The bundle changes with kmsd's version under fixed names: always revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The file at `path` (relative to `/console/`; empty for the app itself).
fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET /console/...`: an embedded file, or 404.
pub async fn serve(uri: Uri) -> Response {
    let rest = uri.path().strip_prefix(PATH).unwrap_or_default();
    with_security_headers(match asset(rest) {
        Some(a) => {
            let mut r = Response::new(Body::from(a.bytes));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            );
            r
        }
        None => {
            let mut r = Response::new(Body::from("Not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
    })
}

/// `GET /console`: redirects to `/console/`, so relative asset paths resolve.
pub async fn redirect() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(PATH));
    with_security_headers(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_exactly_the_built_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console-dist");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    let rel = p.strip_prefix(&root).unwrap().to_str().unwrap();
                    on_disk.push(rel.replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "console-dist/ and the ASSETS table differ");
    }

    #[test]
    fn the_app_is_the_index_and_unknown_paths_are_not_found() {
        assert_eq!(asset("").map(|a| a.path), Some("index.html"));
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("assets/other.js").is_none());
    }

    #[test]
    fn the_index_loads_no_inline_script_and_nothing_from_elsewhere() {
        let index = std::str::from_utf8(asset("").unwrap().bytes).unwrap();
        assert!(!index.contains("<script>"), "inline script in index.html");
        assert!(!index.contains("http://") && !index.contains("https://"));
    }
}
