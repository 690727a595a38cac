"""Tables and plots of search results."""
