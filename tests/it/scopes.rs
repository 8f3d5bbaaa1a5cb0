//! Every scope allowed and refused on every RPC: one table of (RPC, a call, who may, who may
//! not), run against a server with a tokens file. A refusal is PERMISSION_DENIED naming the
//! scope needed; an allowed call may still fail for its own reasons (a lease already acked),
//! but never with an authorization code.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use courier::api::auth::rules::RULES;
use courier::client::AuthChannel;
use courier::proto::admin_client::AdminClient;
use courier::proto::consumer_client::ConsumerClient;
use courier::proto::producer_client::ProducerClient;
use courier::proto::{
    AckRequest, CancelRequest, CheckStatusRequest, ConfirmRequest, CreateSubscriptionRequest,
    Decision, DeleteSubscriptionRequest, DiscardDeadLettersRequest, ExtendLeaseRequest,
    GetStatsRequest, GetSubscriptionRequest, ListDeliveriesRequest, ListMessagesRequest,
    ListSubscriptionsRequest, NackRequest, ReceiveRequest, RedriveRequest, RegisterCheckerRequest,
    RejectRequest, ResolveRequest, UpdateSubscriptionRequest,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use tonic::{Code, Status};

use crate::auth::{as_token, write_tokens};
use crate::harness::*;

const SHOP_SUB: &str = "billing-eu";
const SCRATCH_SUB: &str = "scratch";

/// name, token, scopes
const PRINCIPALS: &[(&str, &str, &[&str])] = &[
    ("admin", "t-admin", &["admin"]),
    ("shop", "t-shop", &["produce:shop"]),
    ("bank", "t-bank", &["produce:bank", "consume:ledger-*"]),
    ("reader", "t-reader", &["read"]),
    ("billing", "t-billing", &["consume:billing-*"]),
    ("nobody", "t-nobody", &[]),
];

/// What the calls act on, made by the admin before the table runs.
struct Fixture {
    prepared: String,
    to_resolve: String,
    receipt: String,
}

#[derive(Clone)]
struct Clients {
    producer: ProducerClient<AuthChannel>,
    consumer: ConsumerClient<AuthChannel>,
    admin: AdminClient<AuthChannel>,
}

type Call = fn(Clients, Arc<Fixture>) -> BoxFuture<'static, Result<(), Status>>;

/// (RPC path, call, allowed principals, refused principals and the scope their error names).
type Case = (
    &'static str,
    Call,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

fn ok<T>(result: Result<tonic::Response<T>, Status>) -> Result<(), Status> {
    result.map(|_| ())
}

fn case(
    rpc: &'static str,
    call: Call,
    allowed: &'static [&'static str],
    refused: &'static [(&'static str, &'static str)],
) -> Case {
    (rpc, call, allowed, refused)
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "/courier.v1.Producer/Prepare",
            |mut c, _| {
                async move {
                    ok(c.producer
                        .prepare(prepare_request("shop", TOPIC, "table-prepare"))
                        .await)
                }
                .boxed()
            },
            &["shop", "admin"],
            &[
                ("bank", "produce:shop"),
                ("reader", "produce:shop"),
                ("billing", "produce:shop"),
                ("nobody", "produce:shop"),
            ],
        ),
        case(
            "/courier.v1.Producer/Publish",
            |mut c, _| {
                async move {
                    ok(c.producer
                        .publish(publish_request("shop", TOPIC, "table-publish"))
                        .await)
                }
                .boxed()
            },
            &["shop", "admin"],
            &[("bank", "produce:shop"), ("reader", "produce:shop")],
        ),
        // By id: the producer is read from the stored message.
        case(
            "/courier.v1.Producer/Confirm",
            |mut c, f| {
                async move {
                    ok(c.producer
                        .confirm(ConfirmRequest {
                            message: by_id(&f.prepared),
                        })
                        .await)
                }
                .boxed()
            },
            &["shop", "admin"],
            &[
                ("bank", "produce:shop"),
                ("reader", "produce:shop"),
                ("nobody", "produce:shop"),
            ],
        ),
        // By key: the producer is the key's.
        case(
            "/courier.v1.Producer/Cancel",
            |mut c, _| {
                async move {
                    ok(c.producer
                        .cancel(CancelRequest {
                            message: by_key("shop", "table-prepare"),
                        })
                        .await)
                }
                .boxed()
            },
            &["shop", "admin"],
            &[("bank", "produce:shop"), ("billing", "produce:shop")],
        ),
        case(
            "/courier.v1.Producer/CheckStatus",
            |mut c, f| {
                async move {
                    ok(c.producer
                        .check_status(CheckStatusRequest {
                            message: by_id(&f.prepared),
                        })
                        .await)
                }
                .boxed()
            },
            &["shop", "reader", "admin"],
            &[
                ("bank", "read (or produce:shop)"),
                ("billing", "read (or produce:shop)"),
            ],
        ),
        case(
            "/courier.v1.Producer/RegisterChecker",
            |mut c, _| {
                async move {
                    ok(c.producer
                        .register_checker(RegisterCheckerRequest {
                            producer: "shop".into(),
                            endpoint: "http://127.0.0.1:9".into(),
                            timeout: None,
                        })
                        .await)
                }
                .boxed()
            },
            &["shop", "admin"],
            &[("bank", "produce:shop"), ("reader", "produce:shop")],
        ),
        case(
            "/courier.v1.Consumer/Receive",
            |mut c, _| {
                async move {
                    ok(c.consumer
                        .receive(ReceiveRequest {
                            max_bytes: 0,
                            subscription: SHOP_SUB.into(),
                            max_messages: 1,
                            wait: None,
                        })
                        .await)
                }
                .boxed()
            },
            &["billing", "admin"],
            &[
                ("bank", "consume:billing-eu"),
                ("shop", "consume:billing-eu"),
                ("reader", "consume:billing-eu"),
            ],
        ),
        case(
            "/courier.v1.Consumer/ExtendLease",
            |mut c, f| {
                async move {
                    ok(c.consumer
                        .extend_lease(ExtendLeaseRequest {
                            subscription: SHOP_SUB.into(),
                            receipt: f.receipt.clone(),
                            extension: secs(30),
                        })
                        .await)
                }
                .boxed()
            },
            &["billing", "admin"],
            &[
                ("bank", "consume:billing-eu"),
                ("reader", "consume:billing-eu"),
            ],
        ),
        case(
            "/courier.v1.Consumer/Nack",
            |mut c, f| {
                async move {
                    ok(c.consumer
                        .nack(NackRequest {
                            subscription: SHOP_SUB.into(),
                            receipt: f.receipt.clone(),
                            delay: secs(60),
                            reason: String::new(),
                        })
                        .await)
                }
                .boxed()
            },
            &["billing", "admin"],
            &[
                ("shop", "consume:billing-eu"),
                ("nobody", "consume:billing-eu"),
            ],
        ),
        case(
            "/courier.v1.Consumer/Reject",
            |mut c, f| {
                async move {
                    ok(c.consumer
                        .reject(RejectRequest {
                            subscription: SHOP_SUB.into(),
                            receipt: f.receipt.clone(),
                            reason: "table".into(),
                        })
                        .await)
                }
                .boxed()
            },
            &["billing", "admin"],
            &[
                ("shop", "consume:billing-eu"),
                ("reader", "consume:billing-eu"),
            ],
        ),
        case(
            "/courier.v1.Consumer/Ack",
            |mut c, f| {
                async move {
                    ok(c.consumer
                        .ack(AckRequest {
                            subscription: SHOP_SUB.into(),
                            receipts: vec![f.receipt.clone()],
                        })
                        .await)
                }
                .boxed()
            },
            &["billing", "admin"],
            &[
                ("bank", "consume:billing-eu"),
                ("reader", "consume:billing-eu"),
            ],
        ),
        case(
            "/courier.v1.Admin/GetSubscription",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .get_subscription(GetSubscriptionRequest {
                            name: SHOP_SUB.into(),
                        })
                        .await)
                }
                .boxed()
            },
            &["reader", "admin"],
            &[("shop", "read"), ("billing", "read")],
        ),
        case(
            "/courier.v1.Admin/ListSubscriptions",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .list_subscriptions(ListSubscriptionsRequest::default())
                        .await)
                }
                .boxed()
            },
            &["reader", "admin"],
            &[("shop", "read"), ("nobody", "read")],
        ),
        case(
            "/courier.v1.Admin/ListMessages",
            |mut c, _| {
                async move { ok(c.admin.list_messages(ListMessagesRequest::default()).await) }
                    .boxed()
            },
            &["reader", "admin"],
            &[("shop", "read"), ("billing", "read")],
        ),
        case(
            "/courier.v1.Admin/ListDeliveries",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .list_deliveries(ListDeliveriesRequest {
                            subscription: SHOP_SUB.into(),
                            ..Default::default()
                        })
                        .await)
                }
                .boxed()
            },
            &["reader", "admin"],
            &[("billing", "read"), ("shop", "read")],
        ),
        case(
            "/courier.v1.Admin/GetStats",
            |mut c, _| async move { ok(c.admin.get_stats(GetStatsRequest {}).await) }.boxed(),
            &["reader", "admin"],
            &[("shop", "read"), ("nobody", "read")],
        ),
        case(
            "/courier.v1.Admin/CreateSubscription",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .create_subscription(CreateSubscriptionRequest {
                            subscription: Some(subscription("table-new", TOPIC)),
                        })
                        .await)
                }
                .boxed()
            },
            &["admin"],
            &[("reader", "admin"), ("shop", "admin"), ("billing", "admin")],
        ),
        case(
            "/courier.v1.Admin/UpdateSubscription",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .update_subscription(UpdateSubscriptionRequest {
                            subscription: Some(subscription(SCRATCH_SUB, TOPIC)),
                        })
                        .await)
                }
                .boxed()
            },
            &["admin"],
            &[("reader", "admin"), ("billing", "admin")],
        ),
        case(
            "/courier.v1.Admin/Redrive",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .redrive(RedriveRequest {
                            subscription: SHOP_SUB.into(),
                            message_ids: vec![],
                            ..Default::default()
                        })
                        .await)
                }
                .boxed()
            },
            &["admin"],
            &[("reader", "admin"), ("billing", "admin")],
        ),
        case(
            "/courier.v1.Admin/DiscardDeadLetters",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .discard_dead_letters(DiscardDeadLettersRequest {
                            subscription: SHOP_SUB.into(),
                            message_ids: vec![],
                            ..Default::default()
                        })
                        .await)
                }
                .boxed()
            },
            &["admin"],
            &[("reader", "admin"), ("billing", "admin")],
        ),
        case(
            "/courier.v1.Admin/Resolve",
            |mut c, f| {
                async move {
                    ok(c.admin
                        .resolve(ResolveRequest {
                            message: by_id(&f.to_resolve),
                            decision: Decision::Commit.into(),
                        })
                        .await)
                }
                .boxed()
            },
            &["admin"],
            &[("reader", "admin"), ("shop", "admin")],
        ),
        case(
            "/courier.v1.Admin/DeleteSubscription",
            |mut c, _| {
                async move {
                    ok(c.admin
                        .delete_subscription(DeleteSubscriptionRequest {
                            name: SCRATCH_SUB.into(),
                        })
                        .await)
                }
                .boxed()
            },
            &["admin"],
            &[("reader", "admin"), ("shop", "admin")],
        ),
    ]
}

fn token_of(name: &str) -> &'static str {
    PRINCIPALS
        .iter()
        .find(|(principal, _, _)| *principal == name)
        .map(|(_, token, _)| *token)
        .unwrap_or_else(|| panic!("no principal {name}"))
}

fn clients(server: &TestServer, name: &str) -> Clients {
    let channel = as_token(server, token_of(name));
    Clients {
        producer: ProducerClient::new(channel.clone()),
        consumer: ConsumerClient::new(channel.clone()),
        admin: AdminClient::new(channel),
    }
}

async fn fixture(server: &TestServer) -> Fixture {
    let mut admin = clients(server, "admin");
    for name in [SHOP_SUB, SCRATCH_SUB] {
        admin
            .admin
            .create_subscription(CreateSubscriptionRequest {
                subscription: Some(subscription(name, TOPIC)),
            })
            .await
            .expect("CreateSubscription as admin");
    }
    let prepare = |key: &'static str| {
        let mut producer = admin.producer.clone();
        async move {
            producer
                .prepare(prepare_request("shop", TOPIC, key))
                .await
                .expect("Prepare as admin")
                .into_inner()
                .message_id
        }
    };
    let prepared = prepare("table-confirm").await;
    let to_resolve = prepare("table-resolve").await;
    admin
        .producer
        .publish(publish_request("shop", TOPIC, "table-delivered"))
        .await
        .expect("Publish as admin");
    let receipt = admin
        .consumer
        .receive(ReceiveRequest {
            max_bytes: 0,
            subscription: SHOP_SUB.into(),
            max_messages: 1,
            wait: secs(5),
        })
        .await
        .expect("Receive as admin")
        .into_inner()
        .deliveries
        .pop()
        .expect("one delivery")
        .receipt;
    Fixture {
        prepared,
        to_resolve,
        receipt,
    }
}

#[tokio::test]
async fn every_rpc_allows_and_refuses_by_scope() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    write_tokens(&tokens, PRINCIPALS);
    let server = TestServer::start_with(|config| {
        config.auth.tokens_file = Some(tokens.clone());
    })
    .await;
    let fixture = Arc::new(fixture(&server).await);

    let cases = cases();
    let covered: BTreeSet<&str> = cases.iter().map(|(rpc, ..)| *rpc).collect();
    let served: BTreeSet<&str> = RULES.iter().map(|(rpc, _)| *rpc).collect();
    assert_eq!(covered, served, "the table covers every RPC");

    for (rpc, call, allowed, refused) in cases {
        for (name, scope) in refused {
            let result = call(clients(&server, name), fixture.clone()).await;
            let status = match result {
                Err(status) if status.code() == Code::PermissionDenied => status,
                other => panic!("{rpc} as {name}: expected PERMISSION_DENIED, got {other:?}"),
            };
            assert!(
                status.message().contains(&format!("needs scope {scope}")),
                "{rpc} as {name}: the error names {scope}: {status:?}"
            );
        }
        for name in allowed {
            let result = call(clients(&server, name), fixture.clone()).await;
            if let Err(status) = result {
                assert!(
                    !matches!(
                        status.code(),
                        Code::PermissionDenied | Code::Unauthenticated
                    ),
                    "{rpc} as {name}: expected to be allowed, got {status:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_open_server_on_loopback_allows_everything() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server.publish(TOPIC, "open").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(delivery.key, "open");
}
