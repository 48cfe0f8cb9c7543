//! The Redis bus passes the same contract suite as the memory bus, against a real
//! redis-server started for this test.

use e2e_tests::RedisServer;
use mcp_bus::conformance::run_all;
use mcp_bus::{Bus, RedisBus, RedisBusConfig};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_bus_keeps_the_bus_contract() {
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    run_all(|limits| {
        // A fresh prefix is a fresh, empty bus on the same server.
        let mut config = RedisBusConfig::new(&url);
        config.prefix = format!("t{}", rand::random::<u32>());
        config.session_log_len = limits.session_log_len;
        config.live_queue_len = limits.live_queue_len;
        let bus = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(RedisBus::connect(config))
        })
        .expect("connect to the test's redis-server");
        bus as Arc<dyn Bus>
    })
    .await;
}
