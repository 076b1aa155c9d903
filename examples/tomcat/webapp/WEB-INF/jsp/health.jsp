<%@ page contentType="text/plain; charset=UTF-8" session="false" trimDirectiveWhitespaces="true"
    import="java.lang.management.ManagementFactory,javax.management.MBeanServer,javax.management.ObjectName" %><%
    // session="false": a health check must never create a session.
    response.setHeader("Cache-Control", "no-store");
    response.setHeader("X-Limpet-Node", System.getProperty("limpet.node", "unknown"));
    // Cluster members this node currently sees (Tribes registers its
    // membership service as an MBean). start.sh waits until every node
    // reports the other two; a load balancer can ignore the header.
    int members = -1;
    try {
        MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
        for (ObjectName on : mbs.queryNames(new ObjectName("*:type=Channel,component=Membership,*"), null)) {
            String[] names = (String[]) mbs.getAttribute(on, "MembersByName");
            members = Math.max(members, names == null ? 0 : names.length);
        }
    } catch (Exception e) {
        members = -1;
    }
    response.setHeader("X-Cluster-Members", String.valueOf(members));
%>ok
