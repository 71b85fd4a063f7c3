"""Worker benchmark: silobridge vs a raw pika pass-through vs RabbitMQ's shovel, same run."""
