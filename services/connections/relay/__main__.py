"""`python -m services.connections.relay`: run a relay replica."""
from services.connections.relay.server import build
from services.kit.app import main

main("relay", build)
