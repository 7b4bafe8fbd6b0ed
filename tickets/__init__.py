"""Help desk: customers, tickets, messages, email and chat channels, knowledge base."""
