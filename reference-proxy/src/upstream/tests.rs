use super::*;
use crate::config::ProxyConfig;
use crate::wire::{HeadParser, Limits, Progress, parse_response};

fn request(text: &str) -> Request {
    let mut p = HeadParser::new(Limits::default());
    assert!(matches!(p.advance(text.as_bytes()), Ok(Progress::Complete(_))), "{text:?}");
    Request::from_head(&p.head(text.as_bytes()), text.as_bytes(), &ProxyConfig::default())
}

fn head(text: &str) -> ResponseHead {
    parse_response(text.as_bytes()).unwrap().unwrap().0
}

fn parent() -> Upstream {
    Upstream::parse("http://127.0.0.1:3128").unwrap()
}

#[test]
fn upstream_urls_and_direct_rules() {
    let up = Upstream::parse("https://parent.test:8443/").unwrap();
    assert_eq!((up.host.as_str(), up.port, up.tls), ("parent.test", 8443, true));
    assert_eq!(up.validate(), Err(UpstreamError::NoCa("https://parent.test:8443".into())));
    assert_eq!(Upstream::parse("http://[::1]:3128").unwrap().url(), "http://[::1]:3128");
    assert!(matches!(Upstream::parse("http://parent.test"), Err(UpstreamError::NoPort(_))));
    assert!(matches!(Upstream::parse("socks5://127.0.0.1:1080"), Err(UpstreamError::Url(_))));
    let mut up = parent();
    up.direct = vec!["127.0.0.0/8".parse().unwrap(), ".Internal.".parse().unwrap(), "::1".parse().unwrap()];
    assert!(up.goes_direct(&OwnedHost::Ip("127.0.0.9".parse().unwrap())));
    assert!(up.goes_direct(&OwnedHost::Ip("::1".parse().unwrap())));
    assert!(!up.goes_direct(&OwnedHost::Ip("192.0.2.1".parse().unwrap())));
    assert!(up.goes_direct(&OwnedHost::Name("db.internal".into())));
    assert!(up.goes_direct(&OwnedHost::Name("internal".into())));
    assert!(!up.goes_direct(&OwnedHost::Name("notinternal".into())));
    assert!("bad name!".parse::<DirectRule>().is_err());
}

#[test]
fn the_parent_gets_the_target_unchanged_our_via_and_our_credentials_only() {
    let req = request(
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nVia: 1.0 client-side\r\n\
         Proxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\nConnection: X-Secret\r\nX-Secret: 1\r\nTE: trailers\r\n\r\n",
    );
    let mut up = parent();
    up.credentials = Some("proxy:pw".into());
    let sent = String::from_utf8(parent_request(&req, &up, "reference-proxy", "via-1").to_bytes()).unwrap();
    assert_eq!(
        sent,
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nVia: 1.0 client-side, 1.1 reference-proxy (via-1)\r\n\
         Proxy-Authorization: Basic cHJveHk6cHc=\r\n\r\n"
    );
    let plain = String::from_utf8(parent_request(&req, &parent(), "p", "via-1").to_bytes()).unwrap();
    assert!(!plain.contains("Proxy-Authorization"), "{plain}");
}

#[test]
fn the_parents_answer_is_a_tunnel_or_a_refusal_that_keeps_its_proxy_status() {
    assert!(matches!(answer(&head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), "p", "me"), Answer::Tunnel));
    let Answer::Refuse(r) = answer(
        &head("HTTP/1.1 504 Gateway Timeout\r\nProxy-Status: up; error=connection_timeout\r\nVia: 1.1 up\r\n\r\n"),
        "p",
        "me",
    ) else {
        panic!("504 tunnelled")
    };
    let text = String::from_utf8(r.to_bytes("me")).unwrap();
    assert!(text.starts_with("HTTP/1.1 504 "), "{text}");
    assert!(
        text.contains(
            "\r\nProxy-Status: up;error=connection_timeout, me; received-status=504; next-hop=\"p\"; details="
        ),
        "{text}"
    );
    assert!(text.contains("\r\nVia: 1.1 up, 1.1 me\r\n"), "{text}");
    let Answer::Refuse(r) =
        answer(&head("HTTP/1.1 407 Proxy Auth\r\nProxy-Authenticate: Basic realm=x\r\n\r\n"), "p", "me")
    else {
        panic!("407 tunnelled")
    };
    let text = String::from_utf8(r.to_bytes("me")).unwrap();
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("Proxy-Status: me; error=proxy_configuration_error; received-status=407"), "{text}");
    assert!(!text.contains("Proxy-Authenticate"), "{text}");
    let Answer::Refuse(r) = answer(&head("HTTP/1.1 404 Not Found\r\n\r\n"), "p", "me") else { panic!("404 tunnelled") };
    assert_eq!(r.status, 502);
    let Answer::Refuse(r) = answer(&head("HTTP/1.1 101 Switching Protocols\r\n\r\n"), "p", "me") else {
        panic!("101 tunnelled")
    };
    assert!(String::from_utf8(r.to_bytes("me")).unwrap().contains("error=http_protocol_error"));
}

#[test]
fn a_parent_proxy_status_that_is_not_a_structured_list_is_dropped_not_copied() {
    for bad in ["x; details=\"abc", "a,", "a, , b", "1bad"] {
        let h = head(&format!("HTTP/1.1 502 Bad Gateway\r\nProxy-Status: {bad}\r\n\r\n"));
        let Answer::Refuse(r) = answer(&h, "p", "me") else { panic!("tunnelled") };
        let text = String::from_utf8(r.to_bytes("me")).unwrap();
        assert!(text.contains("\r\nProxy-Status: me; received-status=502"), "{bad}: {text}");
    }
    let long = format!("HTTP/1.1 502 Bad Gateway\r\nProxy-Status: up; details=\"{}\"\r\n\r\n", "a".repeat(3000));
    let Answer::Refuse(r) = answer(&head(&long), "p", "me") else { panic!("tunnelled") };
    assert!(r.chain.unwrap().prior.is_none());
}

#[test]
fn loops_are_our_own_member_in_via_or_too_many_hops() {
    assert!(is_loop(&["1.1 a, 1.1 reference-proxy (via-1)".into()], "via-1"));
    assert!(!is_loop(&["1.1 a".into(), "1.0 b".into()], "via-1"));
    // Another proxy with the same name (another process, another token) is not a loop.
    assert!(!is_loop(&["1.1 reference-proxy (via-2)".into()], "via-1"));
    let many = (0..32).map(|i| format!("1.1 p{i}")).collect::<Vec<_>>().join(", ");
    assert!(is_loop(&[many], "via-1"));
    assert_ne!(via_token(), via_token());
}
