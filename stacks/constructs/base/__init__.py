"""What every capability construct is built from: a function with its own role and log group
(functions) and a state machine from its statemachines/*.asl.json file (workflow)."""
