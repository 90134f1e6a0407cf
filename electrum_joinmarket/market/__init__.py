"""The market: offer filtering, fee limits and maker choice (``orders``), and the coinjoin
fee/size model and amount solvers (``feemodel``)."""
