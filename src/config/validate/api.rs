//! A server added through the admin API (`POST /api/pools/{pool}/servers`):
//! its JSON body is read as an lb.yaml server entry (JSON is YAML) and held
//! to the same rules, so the API accepts exactly what the file would.

use std::path::Path;

use super::super::file;
use super::super::{ConfigError, ServerConfig, Source};
use super::checker::Checker;

/// The server `body` describes (`name`, `address`, optional `route`,
/// `weight`, `state`, `backup`, `tls`).
pub fn server(body: &str) -> Result<ServerConfig, ConfigError> {
    let path = Path::new("the request body");
    if body.trim().is_empty() {
        return Err(ConfigError::at(
            path,
            serde_saphyr::Location::UNKNOWN,
            "(document)",
            "the body must be a JSON object with at least \"name\" and \"address\".".into(),
        ));
    }
    let s: file::ServerFile =
        serde_saphyr::from_str(body).map_err(|e| ConfigError::syntax(path, &e))?;
    let c = Checker { path };
    let mut roots = super::tls::Roots::new();
    super::pool::server(&c, "server", &s, &mut roots, Source::Api(body.into()))
}

#[cfg(test)]
mod tests {
    use super::server;

    #[test]
    fn the_api_takes_what_the_file_takes() {
        let s = server(
            r#"{"name":"node4","address":"127.0.0.1:9004","weight":2,"route":"n4","backup":true}"#,
        )
        .unwrap();
        assert_eq!(
            (s.name.as_str(), s.route.as_str(), s.weight),
            ("node4", "n4", 2)
        );
        assert!(s.backup);
        assert_eq!(s.source.as_str(), "api");
        let s = server(r#"{"name":"node5","address":"127.0.0.1:9005"}"#).unwrap();
        assert_eq!(s.route, "node5");
        for (body, says) in [
            ("", "JSON object"),
            ("{", "request body"),
            (r#"{"name":"n"}"#, "address"),
            (r#"{"name":"n","address":"nowhere"}"#, "address"),
            (r#"{"name":"n","address":"127.0.0.1:0"}"#, "port"),
            (
                r#"{"name":"n","address":"127.0.0.1:1","weight":0}"#,
                "weight",
            ),
            (
                r#"{"name":"n","address":"127.0.0.1:1","state":"up"}"#,
                "state",
            ),
            (
                r#"{"name":"n","address":"127.0.0.1:1","colour":"red"}"#,
                "colour",
            ),
            (r#"["n"]"#, "request body"),
        ] {
            let e = server(body).unwrap_err().to_string();
            assert!(e.contains(says), "{body:?}: {e}");
        }
    }
}
