//! `redirect_https: true`: a plain listener beside a TLS one answers every
//! request with `308 Permanent Redirect` to the same target over HTTPS on
//! the default port (nginx `return 308 https://$host$request_uri;`, HAProxy
//! `http-request redirect scheme https code 308`). 308 keeps the method and
//! body, where 301 lets clients turn a POST into a GET.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, Uri, header};

use super::body::ResBody;
use super::end::End;
use super::error::ProxyError;

/// The redirect for a request to `host` (without port) and `uri`.
pub fn to_https(host: Option<&str>, uri: &Uri, mut end: End) -> Response<ResBody> {
    let Some(location) = host.and_then(|h| location(h, uri)) else {
        // Nothing to redirect to (an HTTP/1.0 request without Host).
        return ProxyError::BadRequest.into_response(end);
    };
    end.set_status(StatusCode::PERMANENT_REDIRECT.as_u16());
    let mut res = Response::new(ResBody::full(
        Bytes::from_static(b"308 Permanent Redirect: use HTTPS\n"),
        Some(end),
    ));
    *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = res.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

pub fn location(host: &str, uri: &Uri) -> Option<HeaderValue> {
    if host.is_empty() {
        return None;
    }
    let target = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let text = if host.contains(':') {
        format!("https://[{host}]{target}")
    } else {
        format!("https://{host}{target}")
    };
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_keeps_path_and_query_and_drops_the_port() {
        let uri: Uri = "/cart?id=7".parse().unwrap();
        assert_eq!(
            location("shop.example.com", &uri).unwrap(),
            "https://shop.example.com/cart?id=7"
        );
        assert_eq!(location("::1", &uri).unwrap(), "https://[::1]/cart?id=7");
        let star: Uri = "*".parse().unwrap();
        assert_eq!(location("a.example", &star).unwrap(), "https://a.example/");
        assert!(location("", &uri).is_none());
    }
}
