mod common;

use common::{delivered, send_line, Server};

#[tokio::test]
async fn subscriber_receives_a_send() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("foo").await;
    publisher.publish("foo", "hi", "all").await;
    sub.expect(delivered("foo", "hi", "all", 0)).await;
    publisher.send(&send_line("foo", "again", "all")).await;
    publisher.expect_ok().await;
    sub.expect(delivered("foo", "again", "all", 1)).await;
    sub.expect_nothing().await;
}
