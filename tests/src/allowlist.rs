//! An app's list of allowed caller addresses, as DingTalk (服务器出口IP), 浙政钉 (IP 白名单), a
//! robot in IP security mode and ZenTao (the app's IP list) keep it: a fake serves through
//! [`serve`] and answers a caller that is not listed the way its system does, naming the
//! address it saw.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

/// The listed addresses; empty until [`Allowlist::only`] (the app takes any caller).
#[derive(Clone, Default)]
pub struct Allowlist(Arc<Mutex<Option<Vec<IpAddr>>>>);

impl Allowlist {
    /// From now on, only these callers are served.
    pub fn only(&self, ips: &[&str]) {
        let ips = ips
            .iter()
            .map(|ip| ip.parse().expect("an IP address"))
            .collect();
        *self.0.lock().unwrap() = Some(ips);
    }

    fn refuses(&self, peer: IpAddr) -> bool {
        self.0
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|ips| !ips.contains(&peer))
    }
}

/// Serves `app` on `listener`; a caller `allow` does not list gets `refusal(its address)`.
pub fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    allow: Allowlist,
    refusal: fn(IpAddr) -> Response,
) {
    let app = app.layer(middleware::from_fn(
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next| {
            let allow = allow.clone();
            async move {
                if allow.refuses(peer.ip()) {
                    return refusal(peer.ip());
                }
                next.run(req).await
            }
        },
    ));
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
}
