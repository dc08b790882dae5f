//! THE list of jobs this service runs. Each line pairs a payload type — whose `Job` impl in
//! `minipay_jobs::payload` holds its queue name, idempotency key and retry budget — with its
//! handler, `run(job, Data<Arc<Services>>)`. Registration on both backends (`worker::run`),
//! the PostgreSQL wake-ups, the admin queue view and the queue metrics all read this list:
//! adding a job is its payload, its handler file, and one line here.

/// Calls `$apply!((args…) Payload => handler, …)` with every job.
macro_rules! each_job {
    ($apply:ident!($($args:tt)*)) => {
        $apply!(($($args)*)
            ::minipay_jobs::PrepayOrder => $crate::worker::prepay_order::run,
            ::minipay_jobs::ApplyPayment => $crate::worker::apply_payment::run,
            ::minipay_jobs::QueryOrder => $crate::worker::query_order::run,
            ::minipay_jobs::RefundOrder => $crate::worker::refund_order::run,
            ::minipay_jobs::ReconcileBill => $crate::worker::reconcile_bill::run,
            ::minipay_jobs::DeliverEvent => $crate::worker::deliver_event::run,
        )
    };
}
pub(crate) use each_job;

macro_rules! queue_names {
    (() $($job:ty => $run:path,)*) => {
        &[$(<$job as ::minipay_jobs::Job>::QUEUE),*]
    };
}

/// Every queue the service runs, in the list's order.
pub const QUEUES: &[&str] = each_job!(queue_names!());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_is_listed_once() {
        assert_eq!(
            QUEUES,
            [
                "prepay_order",
                "apply_payment",
                "query_order",
                "refund_order",
                "reconcile_bill",
                "deliver_event",
            ]
        );
    }
}
