<%@ page contentType="application/json; charset=UTF-8" session="true" trimDirectiveWhitespaces="true" %><%
    // One integer per session. setAttribute() on every request (even with the
    // same key) is what makes DeltaManager send a delta to the other nodes.
    Integer previous = (Integer) session.getAttribute("counter");
    int counter = (previous == null ? 0 : previous.intValue()) + 1;
    session.setAttribute("counter", Integer.valueOf(counter));

    // The node name comes from -Dlimpet.node=nodeN (set by start.sh); it is
    // the same string as the Engine's jvmRoute.
    String server = System.getProperty("limpet.node", "unknown");
    response.setHeader("Cache-Control", "no-store");
    response.setHeader("X-Limpet-Node", server);
%>{"server":"<%= server %>","session":"<%= session.getId() %>","counter":<%= counter %>}
