from services.kit.migrations_env import run
from services.connections.tables import Base

run(Base.metadata)
