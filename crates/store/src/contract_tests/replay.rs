//! One-time ids.

use super::*;

pub(super) async fn one_time_ids(store: Arc<dyn Store>) {
    let t = now();
    let exp = t + Duration::minutes(5);
    assert!(store.use_once("assertion:c1", "j1", exp, t).await.unwrap());
    assert!(
        !store.use_once("assertion:c1", "j1", exp, t).await.unwrap(),
        "a second use is a replay"
    );
    assert!(
        store.use_once("assertion:c2", "j1", exp, t).await.unwrap(),
        "namespaces are separate"
    );
    assert!(store.use_once("dpop:k", "j1", exp, t).await.unwrap());
    // Concurrent uses of one id: exactly one wins.
    let racers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.use_once("dpop:k", "race", exp, t).await })
    });
    let mut wins = 0;
    for racer in racers {
        wins += usize::from(racer.await.unwrap().unwrap());
    }
    assert_eq!(wins, 1);
    // Once expired, the id is forgotten (and may be taken again).
    let later = exp + Duration::seconds(1);
    assert!(
        store
            .use_once("assertion:c1", "j1", later + Duration::minutes(5), later)
            .await
            .unwrap()
    );
    assert_eq!(store.prune_used_ids(later).await.unwrap(), 3);
    assert!(
        !store
            .use_once("assertion:c1", "j1", later, later)
            .await
            .unwrap()
    );
}
