"""One construct per capability; RelayStack composes them."""
