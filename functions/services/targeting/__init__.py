"""A sender's targets: their limits (targets), the flow control that holds them across Lambdas
(flow_control) and the circuit breaker that pauses a dead target's messages (target_health)."""
