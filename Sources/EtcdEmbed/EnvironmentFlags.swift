import Foundation

/// etcd's configuration through environment variables: `ETCD_DATA_DIR=/x` is `--data-dir=/x`.
///
/// As in etcd, a flag given on the command line wins over its variable. A variable that names no
/// flag of ours is reported, so a misspelt setting never passes silently.
public enum EnvironmentFlags {
    /// The command line with the flags that only the environment sets appended.
    public static func arguments(
        _ commandLine: [String], environment: [String: String], knownFlags: Set<String>, warn: (String) -> Void
    ) -> [String] {
        var arguments = commandLine
        let given = Set(commandLine.compactMap { argument -> String? in
            guard argument.hasPrefix("--") else { return nil }
            return String(argument.dropFirst(2).prefix { $0 != "=" })
        })
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("ETCD_") {
            let flag = name.dropFirst("ETCD_".count).lowercased().replacingOccurrences(of: "_", with: "-")
            guard knownFlags.contains(flag) else {
                warn("unrecognized environment variable \(name)=\(value)")
                continue
            }
            if given.contains(flag) {
                warn("recognized environment variable \(name), but unused: shadowed by corresponding flag")
                continue
            }
            arguments.append("--\(flag)=\(value)")
        }
        return arguments
    }
}
