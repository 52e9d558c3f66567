//! Checks of the `connections` section and the monitor address.

use super::*;

/// `monitor.listen`: an IP socket address, or `host:port` with a plain host name such as
/// `localhost` (resolved when the monitor starts, not here: `check` connects nowhere).
pub(super) fn check_listen(at: &mut Scope, listen: &str) {
    if listen.parse::<SocketAddr>().is_ok() {
        return;
    }
    let hint = "use host:port, e.g. 127.0.0.1:9464, 0.0.0.0:9464, [::1]:9464 or localhost:9464";
    let Some((host, port)) = listen.rsplit_once(':') else {
        return at.push(format!("{listen:?} has no port ({hint})"));
    };
    if port.parse::<u16>().is_err() {
        return at.push(format!("{listen:?} has an invalid port {port:?} ({hint})"));
    }
    if !valid_host_name(host) {
        at.push(format!("{listen:?} has an invalid host {host:?} ({hint})"));
    }
}

/// A DNS host name (letters, digits, `-`, `_` and dots between non-empty labels).
pub(super) fn valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Checks one server address: `scheme://host[:port]` with scheme nats, tls, ws or wss, or a bare
/// `host[:port]`. Returns the scheme (lowercase; `nats` when bare). Credentials in the URL
/// (`user:pass@`, `token@`) are refused: the NATS client does not send them, and a URL is shown in
/// logs and errors, so they belong in the connection's `user`/`password` or `token`.
pub(super) fn check_server(at: &mut Scope, url: &str) -> Option<String> {
    let mut refuse = |message: String| {
        at.push(message);
        None
    };
    let hint =
        "use e.g. nats://10.0.0.1:4222, tls://nats.example.com:4222 or wss://nats.example.com";
    if url.trim().is_empty() {
        return refuse(format!("is empty ({hint})"));
    }
    // Credentials in the URL are never shown, and never used: see below.
    let shown = redact_url(url);
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse(format!("{shown:?} contains whitespace ({hint})"));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("nats".to_string(), url),
    };
    if !matches!(scheme.as_str(), "nats" | "tls" | "ws" | "wss") {
        return refuse(format!(
            "{shown:?} has unsupported scheme {scheme:?} (use nats://, tls://, ws:// or wss://)"
        ));
    }
    if split_userinfo(url).is_some() {
        return refuse(format!(
            "{shown:?} carries credentials in the URL, which ferry does not use (the NATS client ignores them, so authentication would fail, and URLs are logged): remove them and set them on the connection instead, as user and password (e.g. user: ferry, password: \"${{NATS_PASSWORD}}\") or token"
        ));
    }
    let after_user = rest;
    let (host_port, path) = match after_user.find('/') {
        Some(slash) => (&after_user[..slash], &after_user[slash..]),
        None => (after_user, ""),
    };
    if !path.is_empty() && path != "/" && !scheme.starts_with("ws") {
        return refuse(format!(
            "{shown:?} has a path, which only ws:// and wss:// servers can have ({hint})"
        ));
    }
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((ip, tail)) = bracketed.split_once(']') else {
            return refuse(format!("{shown:?} has an unclosed '[' ({hint})"));
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return refuse(format!("{shown:?} has an invalid IPv6 address {ip:?}"));
        }
        match tail {
            "" => (ip, None),
            _ => match tail.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return refuse(format!("{shown:?}: expected ':port' after ']' ({hint})")),
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) if port.contains(':') => {
                return refuse(format!(
                "{shown:?}: write an IPv6 address in brackets, e.g. nats://[::1]:4222 ({host}...)"
            ))
            }
            Some((host, port)) => {
                if host.parse::<IpAddr>().is_err() && !valid_host_name(host) {
                    return refuse(format!("{shown:?} has an invalid host {host:?} ({hint})"));
                }
                (host, Some(port))
            }
            None => {
                if host_port.parse::<IpAddr>().is_err() && !valid_host_name(host_port) {
                    return refuse(format!(
                        "{shown:?} has an invalid host {host_port:?} ({hint})"
                    ));
                }
                (host_port, None)
            }
        }
    };
    if host.is_empty() {
        return refuse(format!("{shown:?} has no host ({hint})"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return refuse(format!("{shown:?} has an invalid port {port:?} ({hint})"));
        }
    }
    Some(scheme)
}

/// One entry of `connections`; `out` is its scope (`connections.<name>`).
pub(super) fn check_connection(out: &mut Scope, name: &str, connection: &ConnectionConfig) {
    if !valid_name(name) {
        out.push(format!(
                "connection name {name:?} may only use A-Z, a-z, 0-9, _ and - (it appears in metric labels)"
            ),
        );
    }
    if connection.servers.is_empty() {
        out.at("servers")
            .push("is empty (list at least one server, e.g. [\"nats://127.0.0.1:4222\"])");
    }
    let mut tls_server = None;
    for (index, server) in connection.servers.iter().enumerate() {
        let scheme = check_server(&mut out.at("servers").index(index), server);
        if scheme.as_deref() == Some("tls") && tls_server.is_none() {
            tls_server = Some(index);
        }
    }
    if let (Some(index), None) = (tls_server, &connection.tls) {
        out.at("tls").push(format!(
                "is required because servers[{index}] uses tls:// (add `tls: {{}}` to trust the system's root certificates, or `tls: {{ ca: FILE }}`)"
            ),
        );
    }

    let mut methods = Vec::new();
    if connection.credentials.is_some() {
        methods.push("credentials");
    }
    if connection.nkey.is_some() {
        methods.push("nkey");
    }
    if connection.token.is_some() {
        methods.push("token");
    }
    if connection.user.is_some() || connection.password.is_some() {
        methods.push("user + password");
    }
    if connection.choria.is_some() {
        methods.push("choria");
    }
    if methods.len() > 1 {
        out.push(format!(
            "sets {} at once: use only one of credentials, nkey, token, user + password or choria",
            methods.join(" and ")
        ));
    }
    if let Some(choria) = &connection.choria {
        check_choria(&mut out.at("choria"), choria);
    }
    match (&connection.user, &connection.password) {
        (Some(_), None) => out.at("password").push("is required with user"),
        (None, Some(_)) => out.at("user").push("is required with password"),
        _ => {}
    }
    if connection.user.as_deref() == Some("") {
        out.at("user").push("is empty");
    }
    if connection
        .token
        .as_ref()
        .is_some_and(|t| t.expose().is_empty())
    {
        out.at("token")
            .push("is empty (if it comes from ${VAR}, that variable is set but empty)");
    }
    let files = [
        (
            "credentials",
            connection.credentials.as_ref(),
            "the .creds file",
        ),
        ("nkey", connection.nkey.as_ref(), "the nkey seed file"),
    ];
    for (key, file, what) in files {
        if file.is_some_and(|f| f.as_os_str().is_empty()) {
            out.at(key)
                .push(format!("is empty (give the path to {what})"));
        }
    }
    if let Some(tls) = &connection.tls {
        let files = [
            ("ca", tls.ca.as_ref(), "the CA certificate (PEM)"),
            ("cert", tls.cert.as_ref(), "the client certificate (PEM)"),
            ("key", tls.key.as_ref(), "the client key (PEM)"),
        ];
        for (key, file, what) in files {
            if file.is_some_and(|f| f.as_os_str().is_empty()) {
                out.at("tls")
                    .at(key)
                    .push(format!("is empty (give the path to {what})"));
            }
        }
        match (&tls.cert, &tls.key) {
            (Some(_), None) => out
                .at("tls.key")
                .push("is required with tls.cert (the client certificate's private key)"),
            (None, Some(_)) => out
                .at("tls.cert")
                .push("is required with tls.key (the client certificate)"),
            _ => {}
        }
    }
    if let Some(domain) = &connection.jetstream_domain {
        if domain.is_empty()
            || domain
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'))
        {
            out.at("jetstream_domain").push(format!("{domain:?} is not a valid JetStream domain (one subject token: no dots, wildcards or whitespace)"),
            );
        }
    }
    for (key, prefix) in [
        ("jetstream_api_prefix", &connection.jetstream_api_prefix),
        ("inbox_prefix", &connection.inbox_prefix),
    ] {
        if let Some(prefix) = prefix {
            let tokens_ok = !prefix.is_empty()
                && prefix.split('.').all(|token| {
                    !token.is_empty()
                        && !token
                            .chars()
                            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
                });
            if !tokens_ok {
                out.at(key).push(format!(
                    "{prefix:?} is not a valid subject prefix (dot-separated tokens; no wildcards, whitespace or empty tokens)"
                ));
            }
        }
    }
    if connection.jetstream_api_prefix.is_some() && connection.jetstream_domain.is_some() {
        out.at("jetstream_api_prefix").push(
            "and jetstream_domain both name the JetStream API; set one (a domain is the prefix $JS.<domain>.API)",
        );
    }
    if connection.name.as_deref() == Some("") {
        out.at("name")
            .push("is empty (omit it, or give the client name to show in server monitoring)");
    }
    let timeout = connection.connect_timeout.0;
    if timeout.is_zero() || timeout > std::time::Duration::from_secs(300) {
        out.at("connect_timeout").push(format!(
            "is {}; must be more than 0 and at most 5m (default 5s)",
            crate::config::units::format_duration(timeout)
        ));
    }
    if connection.subscription_capacity == 0 {
        out.at("subscription_capacity")
            .push("must be at least 1 (default 65536)");
    } else if connection.subscription_capacity > MAX_SUBSCRIPTION_CAPACITY {
        out.at("subscription_capacity").push(format!(
                "is {}; must be at most {MAX_SUBSCRIPTION_CAPACITY}, the most the NATS client's subscription buffer can hold (default 65536)",
                connection.subscription_capacity
            ),
        );
    }
}

/// `connections.<name>.choria`: the collective is one subject token, and both files are readable
/// and hold a Choria JWT and the seed of the key it names (read here, which is offline: `check`
/// connects nowhere). The seed is never quoted.
fn check_choria(out: &mut Scope, choria: &ChoriaLogin) {
    let collective = &choria.collective;
    if collective.is_empty()
        || collective
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'))
    {
        out.at("collective").push(format!(
            "{collective:?} is not a collective name (one subject token, e.g. choria: the broker allows replies under <collective>.reply.<hash>)"
        ));
    }
    let mut empty = false;
    for (key, file, what) in [
        (
            "jwt_file",
            &choria.jwt_file,
            "the Choria client or server JWT",
        ),
        (
            "seed_file",
            &choria.seed_file,
            "the hex ed25519 seed of the JWT's key",
        ),
    ] {
        if file.as_os_str().is_empty() {
            out.at(key)
                .push(format!("is empty (give the path to {what})"));
            empty = true;
        }
    }
    if empty {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });
    let problem = crate::choria::Login::read(choria).and_then(|login| login.check(choria, now));
    if let Err(problem) = problem {
        let key = problem.key.trim_start_matches("choria.");
        out.at(key).push(problem.to_string());
    }
}
