-- Bill reconciliation: a day's refunds are the ones WeChat accepted on it.
CREATE INDEX refunds_accepted ON refunds (accepted_at) WHERE accepted_at IS NOT NULL;
