//! Palabre <-> Synapse: keys and profiles both ways.

use super::{check_notary, reads_remote_profile, remote_profile_not_found};
use crate::harness::{Homeserver, Net, PalabreOptions};

/// Palabre's signed requests are verified by Synapse (a Palabre user reads a Synapse user's
/// profile) and Synapse's by Palabre, which fetches Synapse's keys (a Synapse user reads a
/// Palabre user's profile); each notary vouches for the other's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_synapse_keys_and_profiles() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;

    let alice = a.client().register("alice").await;
    let sam = syn.client().register("sam").await;
    alice.set_displayname("Alice on Palabre").await;
    sam.set_displayname("Sam on Synapse").await;

    // Palabre -> Synapse.
    reads_remote_profile(&alice, &sam, "Sam on Synapse").await;
    remote_profile_not_found(&alice, syn.server_name()).await;
    // Synapse -> Palabre.
    reads_remote_profile(&sam, &alice, "Alice on Palabre").await;
    remote_profile_not_found(&sam, a.server_name()).await;

    check_notary(&net, &a, &syn).await;
    check_notary(&net, &syn, &a).await;
}
