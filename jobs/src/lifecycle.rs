//! What every lifecycle of the service has in common — orders today, refunds next: a closed
//! set of statuses stored by name, and the transitions between them. The store builds each
//! guarded `UPDATE … WHERE status IN (…)` from [`Lifecycle::sources`], so the transitions the
//! SQL allows are exactly the ones `can_become` names, for every lifecycle alike.

/// A status of one lifecycle.
pub trait Lifecycle: Copy + Eq + std::fmt::Debug + 'static {
    /// Every status, in lifecycle order.
    const ALL: &'static [Self];

    /// The stored (and wire) name.
    fn as_str(self) -> &'static str;

    /// Whether `self → next` is a transition the service may make.
    fn can_become(self, next: Self) -> bool;

    /// Every status that may become `to`, in lifecycle order: the guard of the store's update
    /// into `to`.
    fn sources(to: Self) -> impl Iterator<Item = Self> {
        Self::ALL
            .iter()
            .copied()
            .filter(move |from| from.can_become(to))
    }
}
