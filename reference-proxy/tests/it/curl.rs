//! A real client: curl through the proxy, over a plain and a TLS connection to the proxy, to a loopback TLS
//! origin. curl is required (the CI installs it); a missing curl fails the test.

use std::process::Command;

use crate::support::*;

fn curl(args: &[String]) -> std::process::Output {
    Command::new("curl")
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("curl must be installed (apt-get install curl)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_plain_and_tls_proxy() {
    let (origin, origin_ca, seen) = tls_origin(&["origin.test"]).await;
    let proxy = start(config()).await;
    let dir = std::env::temp_dir().join(format!("reference-proxy-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let origin_ca_path = dir.join("origin-ca.pem");
    let proxy_ca_path = dir.join("proxy-ca.pem");
    std::fs::write(&origin_ca_path, &origin_ca).unwrap();
    std::fs::write(&proxy_ca_path, proxy.ca_cert_pem().unwrap()).unwrap();
    let url = format!("https://origin.test:{}/", origin.port());
    let plain = format!("http://127.0.0.1:{}", proxy.plain_addrs()[0].port());
    let tls_port = proxy.tls_addrs()[0].port();
    let variants: Vec<Vec<String>> = vec![
        vec!["--proxy".into(), plain],
        // HTTPS proxy reached by IP address (no SNI) ...
        vec![
            "--proxy".into(),
            format!("https://127.0.0.1:{tls_port}"),
            "--proxy-cacert".into(),
            proxy_ca_path.display().to_string(),
        ],
        // ... and by name (SNI proxy.test, which differs from the CONNECT target).
        vec![
            "--proxy".into(),
            format!("https://proxy.test:{tls_port}"),
            "--proxy-cacert".into(),
            proxy_ca_path.display().to_string(),
            "--resolve".into(),
            format!("proxy.test:{tls_port}:127.0.0.1"),
        ],
    ];
    for proxy_args in variants {
        let mut args: Vec<String> = vec![
            "--silent".into(),
            "--show-error".into(),
            "--max-time".into(),
            "20".into(),
            "--noproxy".into(),
            String::new(),
            "--cacert".into(),
            origin_ca_path.display().to_string(),
        ];
        args.extend(proxy_args.iter().cloned());
        args.push(url.clone());
        let out = tokio::task::spawn_blocking(move || curl(&args)).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "curl {proxy_args:?} failed: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from origin\n", "{proxy_args:?}");
    }
    assert_eq!(*seen.lock().unwrap(), vec![Some("origin.test".to_owned()); 3]);
    let _ = std::fs::remove_dir_all(&dir);
}
