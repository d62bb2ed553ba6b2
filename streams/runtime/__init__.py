"""The one place that touches Faust and aiokafka internals: transactions, the outbox and table writes."""
