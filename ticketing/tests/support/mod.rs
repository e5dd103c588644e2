//! The `--target all` composition for web tests: every service, and the pages calling
//! the API in-process, on port 0 with the test's own data directory.

#![allow(dead_code)] // Each test file uses its own part.

pub mod browser;
pub mod listings;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_kit::testing::{TestBackend, TestEnv, TestServer};

pub async fn mount_all(rt: &Runtime, order_ttl: Duration) -> Vec<Mounted> {
    vec![
        ticketing_auth::mount(rt, &Default::default())
            .await
            .unwrap(),
        ticketing_tickets::mount(rt).await.unwrap(),
        ticketing_orders::mount(
            rt,
            &ticketing_orders::Settings {
                order_ttl,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
        ticketing_payments::mount(
            rt,
            Arc::new(ticketing_payments::provider::SandboxProvider::new()),
        )
        .await
        .unwrap(),
        ticketing_expiration::mount(rt, &ticketing_expiration::Settings::default())
            .await
            .unwrap(),
    ]
}

/// The site as `cargo run` serves it; drop the `TestEnv` last.
pub struct Site {
    pub server: TestServer,
    pub env: TestEnv,
}

impl Site {
    pub async fn start(order_ttl: Duration) -> Site {
        Self::start_with(order_ttl, false).await
    }

    /// With the webhooks service too (endpoints on the test's loopback receivers).
    pub async fn start_with(order_ttl: Duration, webhooks: bool) -> Site {
        let env = TestEnv::new(TestBackend::Sqlite);
        let mut services = mount_all(&env.runtime, order_ttl).await;
        if webhooks {
            let settings = ticketing_webhooks::Settings {
                allow_private: true,
                ..Default::default()
            };
            services.push(
                ticketing_webhooks::mount(&env.runtime, &settings)
                    .await
                    .unwrap(),
            );
        }
        Self::serve(env, services).await
    }

    /// With the check-in service too (passes, gate devices).
    pub async fn start_with_checkin(order_ttl: Duration) -> Site {
        let env = TestEnv::new(TestBackend::Sqlite);
        let mut services = mount_all(&env.runtime, order_ttl).await;
        services.push(
            ticketing_checkin::mount(&env.runtime, &Default::default())
                .await
                .unwrap(),
        );
        Self::serve(env, services).await
    }

    /// The pages and the API of `services`, served.
    async fn serve(env: TestEnv, mut services: Vec<Mounted>) -> Site {
        let (api, slot) = ticketing_web::ApiClient::in_process();
        let pages = ticketing_web::router(ticketing_web::WebConfig {
            api,
            cookie_secure: false,
            stripe_publishable_key: None,
            tracing: None,
        });
        let app: Router = ticketing_kit::app::compose(&mut services, pages, vec![]);
        slot.set(app.clone());
        Site {
            server: TestServer::spawn_router(app).await,
            env,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}
