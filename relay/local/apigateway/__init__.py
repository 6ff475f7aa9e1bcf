"""API Gateway as `relay dev` plays it: the REST API read from the template (api_definition), its
request path (gateway: authorizer, API keys, throttles, mapping templates) and the Velocity engine
its mapping templates run on (velocity)."""
