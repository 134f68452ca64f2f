"""Output formats every report shares: Markdown tables and PNG figures."""
