import dagster as dg

agents = dg.DynamicPartitionsDefinition(name="agents")
