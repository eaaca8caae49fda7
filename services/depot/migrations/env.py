from services.depot.tables import Base
from services.kit.migrations_env import run

run(Base.metadata)
